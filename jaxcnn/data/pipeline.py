"""tf.data assembly: index order (seeded, per epoch) -> gather -> normalise -> [devices, per_device, ...].

The order of examples is drawn with NumPy from (seed, epoch), so epoch k's batches are the same
whether the run started at epoch 0 or resumed at k, and the same whatever the TF version. Every
process draws the same global order and keeps its own slice of each global batch, so the global batch
is identical for any process count.
"""

from typing import Iterator

import jax
import numpy as np

from jaxcnn.data import tf_import
from jaxcnn.data.sources import Split


def batch_layout(global_batch: int) -> tuple[int, int, int]:
  """(this process's share of the global batch, local device count, examples per device)."""
  devices = jax.device_count()
  if global_batch < 1 or global_batch % devices:
    raise ValueError(f"batch size {global_batch} does not divide by the {devices} devices "
                     f"({jax.process_count()} process(es) x {jax.local_device_count()} local device(s))")
  local_devices = jax.local_device_count()
  per_device = global_batch // devices
  return per_device * local_devices, local_devices, per_device


def channel_stats(split: Split) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std of the images in [0, 1] (computed on the training split)."""
  pixels = split.images.reshape(-1, split.images.shape[-1]).astype(np.float64) / 255.0
  return pixels.mean(axis=0).astype(np.float32), pixels.std(axis=0).astype(np.float32)


def num_batches(num_examples: int, global_batch: int, *, drop_remainder: bool) -> int:
  return num_examples // global_batch if drop_remainder else -(-num_examples // global_batch)


def _local_slices(order: np.ndarray, global_batch: int) -> np.ndarray:
  """[steps, local_batch] indices: this process's columns of each global batch."""
  local_batch, _, _ = batch_layout(global_batch)
  start = jax.process_index() * local_batch
  return order.reshape(-1, global_batch)[:, start : start + local_batch]


def _dataset(split: Split, index_batches: np.ndarray, masks: np.ndarray | None, mean, std, global_batch: int):
  tf = tf_import.tensorflow()
  _, local_devices, per_device = batch_layout(global_batch)
  images, labels = tf.constant(split.images), tf.constant(split.labels)
  mean, std = tf.constant(np.asarray(mean, np.float32)), tf.constant(np.asarray(std, np.float32))

  def assemble(indices, mask=None):
    image = (tf.cast(tf.gather(images, indices), tf.float32) / 255.0 - mean) / std
    batch = {"image": image, "label": tf.gather(labels, indices)}
    if mask is not None:
      batch["mask"] = mask
    return {k: tf.reshape(v, (local_devices, per_device, *v.shape[1:])) for k, v in batch.items()}

  tensors = (index_batches,) if masks is None else (index_batches, masks)
  ds = tf.data.Dataset.from_tensor_slices(tensors).map(assemble, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE)


def train_batches(split: Split, *, global_batch: int, seed: int, epoch: int, mean, std) -> Iterator[dict]:
  """One epoch of shuffled training batches; the incomplete last batch is dropped."""
  steps = num_batches(len(split), global_batch, drop_remainder=True)
  if steps == 0:
    raise ValueError(f"batch size {global_batch} is larger than the {len(split)} training examples")
  order = np.random.default_rng([seed, epoch]).permutation(len(split))[: steps * global_batch]
  return _dataset(split, _local_slices(order, global_batch), None, mean, std, global_batch).as_numpy_iterator()


def eval_batches(split: Split, *, global_batch: int, mean, std) -> Iterator[dict]:
  """Every example exactly once, in order; the last batch is padded and its padding masked out."""
  steps = num_batches(len(split), global_batch, drop_remainder=False)
  padded = np.arange(steps * global_batch)
  mask = padded < len(split)
  order = np.where(mask, padded, 0)
  return _dataset(split, _local_slices(order, global_batch), _local_slices(mask, global_batch), mean, std,
                  global_batch).as_numpy_iterator()
