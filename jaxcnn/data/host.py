"""The TF-free pipeline: a NumPy host loader for in-memory datasets; the augmentation runs on a device in JAX.

Each step gathers this process's uint8 images and their plan rows on the host (cheap copies, a quarter
of the float bytes to transfer) and one jitted, vmapped JAX function cuts, resizes, mirrors, lights and
normalises the flat batch; the parallel strategy then lays it out over its devices like any other batch.
A chain without ops (whole images, normalised) is computed in NumPy on the host instead: the batch then
reaches the train step as a host array, like a tf.data batch, with no device program of its own to
dispatch and no device-to-device copy when the strategy splits it over several devices.
"""

import functools
from collections.abc import Iterator

import jax
import numpy as np

from jaxcnn.data import jax_ops


@functools.lru_cache(maxsize=8)
def _augmenter(chain, out_hw: tuple, mean: tuple, std: tuple):
  """One compiled function per chain and shape, reused across epochs."""
  return jax.jit(jax.vmap(jax_ops.augment_fn(chain, out_hw, np.float32(mean), np.float32(std))))


def batches(split, indices, plan, mask, chain, mean, std, out_hw) -> Iterator[dict]:
  """[local_batch, ...] batches of `split` for rows `indices` [steps, local_batch] with their plan rows."""
  if chain.is_identity:
    mean, std = np.float32(mean), np.float32(std)
    augment = lambda images, rows: (images.astype(np.float32) / np.float32(255.0) - mean) / std
  else:
    augment = _augmenter(chain, tuple(out_hw), tuple(np.float32(mean).tolist()), tuple(np.float32(std).tolist()))
  columns = plan.as_dict()
  for step, rows in enumerate(indices):
    batch = {
      "image": augment(split.images[rows], {k: v[step] for k, v in columns.items()}),
      "label": split.labels[rows],
    }
    if mask is not None:
      batch["mask"] = mask[step]
    yield batch
