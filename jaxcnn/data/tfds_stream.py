"""Streaming a TFDS split too large for memory (ImageNet, cats_vs_dogs) through tf.data.

Each process reads its own even share of the split (`tfds.even_splits`): disjoint, together the whole
split. Training shuffles file order and examples with seeds from (seed, epoch, process), so an epoch
is reproducible for a given seed and process count; each example's augmentation plan is drawn from
(seed, epoch, process, position). The images stay encoded until the plan is known, so a JPEG is
decoded only inside its crop window.
"""

from collections.abc import Iterator

import jax
import numpy as np

from jaxcnn.data import tf_import, tf_ops
from jaxcnn.data.sources import TfdsSplit

SHUFFLE_BUFFER = 16_384


def batches(
  split: TfdsSplit, chain, mean, std, local_batch: int, *, seed: int | None = None, epoch: int = 0, start_batch: int = 0
) -> Iterator[dict]:
  """This process's [local_batch, ...] batches: training (seed given: shuffled, whole batches, from batch
  `start_batch` on, the earlier ones read but not decoded) or evaluation (padded, masked)."""
  tf = tf_import.tensorflow()
  train, process = seed is not None, jax.process_index()
  ds, sizes = _encoded_examples(split, seed, epoch, process)
  ds, steps = (
    _train_order(ds, sizes, local_batch, seed, epoch, process) if train else _eval_padding(ds, sizes, local_batch)
  )
  # Positions number the examples before the skip: each keeps its augmentation draw on resumption.
  ds = ds.take(steps * local_batch).enumerate().skip(start_batch * local_batch)
  ds = ds.map(_augmenter(chain, mean, std, seed, epoch, process), tf.data.AUTOTUNE).batch(local_batch)
  ds = (ds.map(_without_mask) if train else ds).prefetch(tf.data.AUTOTUNE)
  return ds.as_numpy_iterator()


def _encoded_examples(split: TfdsSplit, seed: int | None, epoch: int, process: int):
  """(this process's share of the split as {"data": encoded image, "label", "mask": True}, every share's size);
  its files in a (seed, epoch, process) order when training."""
  tf, tfds = tf_import.tensorflow(), tf_import.tensorflow_datasets()
  shards = tfds.even_splits(split.split, n=jax.process_count())
  sizes = [split.builder.info.splits[s].num_examples for s in shards]
  image_key = next(k for k, f in split.builder.info.features.items() if isinstance(f, tfds.features.Image))
  train = seed is not None
  read_config = (
    tfds.ReadConfig(shuffle_seed=int(np.random.default_rng([seed, epoch, process]).integers(2**31))) if train else None
  )
  ds = split.builder.as_dataset(
    split=shards[process],
    shuffle_files=train,
    read_config=read_config,
    decoders={image_key: tfds.decode.SkipDecoding()},
  )
  return ds.map(lambda ex: {"data": ex[image_key], "label": tf.cast(ex["label"], tf.int32), "mask": True}), sizes


def _train_order(ds, sizes: list[int], local_batch: int, seed: int, epoch: int, process: int):
  """(ds shuffled with a (seed, epoch, process) seed, steps): every process takes the same number of steps, set by
  the smallest share."""
  steps = min(sizes) // local_batch
  if steps == 0:
    raise ValueError(f"a process's batch of {local_batch} is larger than its {min(sizes)} training examples")
  return ds.shuffle(SHUFFLE_BUFFER, seed=int(np.random.default_rng([seed, epoch, process, 1]).integers(2**31))), steps


def _eval_padding(ds, sizes: list[int], local_batch: int):
  """(ds followed by masked copies of its first example, steps): enough steps for the largest share."""
  steps = -(-max(sizes) // local_batch)
  return ds.concatenate(ds.take(1).map(lambda ex: {**ex, "mask": False}).repeat()), steps


def _augmenter(chain, mean, std, seed: int | None, epoch: int, process: int):
  """example(position, {"data", "label", "mask"}) -> {"image", "label", "mask"}: the encoded image decoded, cut
  and augmented by its plan row, drawn from (seed, epoch, process, position)."""
  tf = tf_import.tensorflow()
  out_hw = chain.output_size((None, None))
  views = chain.num_views or 1
  mean, std = tf.constant(np.float32(mean)), tf.constant(np.float32(std))
  photometric_types = [tf.float32] * len(chain.photometric_ops)
  not_pil = tf.constant(False)  # TFDS re-encoded every image in a format TensorFlow reads

  def plan_row(position, height, width):
    rng = np.random.default_rng([seed or 0, epoch, process, int(position)])
    plan = chain.plan(rng, [height], [width])
    return (plan.windows[0], plan.flips[0], *(p[0] for p in plan.photometric))

  def example(position, ex):
    data = ex["data"]
    hw = tf.cond(
      tf.io.is_jpeg(data),
      lambda: tf.image.extract_jpeg_shape(data)[:2],
      lambda: tf.shape(tf_ops.decode(data, not_pil))[:2],
    )
    window, flip, *photometric = tf.numpy_function(
      plan_row, [position, hw[0], hw[1]], [tf.int32, tf.bool, *photometric_types], stateful=False
    )
    row = {
      "window": tf.ensure_shape(window, (views, 4)),
      "flip": tf.ensure_shape(flip, (views,)),
      **{f"photometric{i}": p for i, p in enumerate(photometric)},
    }
    image = tf_ops.finish_example(tf_ops.views_of_file(data, not_pil, row, out_hw, views), row, chain, mean, std)
    return {"image": image, "label": ex["label"], "mask": ex["mask"]}

  return example


def _without_mask(batch):
  return {k: v for k, v in batch.items() if k != "mask"}
