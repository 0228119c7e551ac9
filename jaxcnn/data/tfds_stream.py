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
  tf, tfds = tf_import.tensorflow(), tf_import.tensorflow_datasets()
  process = jax.process_index()
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
  ds = ds.map(lambda ex: {"data": ex[image_key], "label": tf.cast(ex["label"], tf.int32), "mask": True})
  if train:
    # Every process takes the same number of steps, set by the smallest share.
    steps = min(sizes) // local_batch
    if steps == 0:
      raise ValueError(f"a process's batch of {local_batch} is larger than its {min(sizes)} training examples")
    ds = ds.shuffle(SHUFFLE_BUFFER, seed=int(np.random.default_rng([seed, epoch, process, 1]).integers(2**31)))
  else:
    steps = -(-max(sizes) // local_batch)
    ds = ds.concatenate(ds.take(1).map(lambda ex: {**ex, "mask": False}).repeat())
  # Positions number the examples before the skip: each keeps its augmentation draw on resumption.
  ds = ds.take(steps * local_batch).enumerate().skip(start_batch * local_batch)
  out_hw = chain.output_size((None, None))
  views = chain.num_views or 1
  mean, std = tf.constant(np.float32(mean)), tf.constant(np.float32(std))
  photometric_types = [tf.float32] * len(chain.photometric_ops)

  def plan_row(position, height, width):
    rng = np.random.default_rng([seed or 0, epoch, process, int(position)])
    plan = chain.plan(rng, [height], [width])
    return (plan.windows[0], plan.flips[0], *(p[0] for p in plan.photometric))

  not_pil = tf.constant(False)  # TFDS re-encoded every image in a format TensorFlow reads

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

  def without_mask(batch):
    return {k: v for k, v in batch.items() if k != "mask"}

  ds = ds.map(example, tf.data.AUTOTUNE).batch(local_batch)
  ds = (ds.map(without_mask) if train else ds).prefetch(tf.data.AUTOTUNE)
  return ds.as_numpy_iterator()
