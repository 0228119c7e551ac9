"""Batches for the train loop: index order (seeded, per epoch) -> augmentation plan -> pixels -> batches.

The order of examples and every augmentation's random numbers are drawn with NumPy from (seed, epoch)
for the whole global batch, so epoch k's batches are the same whether the run started at epoch 0 or
resumed at k, whatever the TF version, and whichever pipeline makes the pixels. Every process draws the
same global order and keeps its own columns of each global batch (`shard`): the processes read disjoint
examples (files) that together cover the epoch, and the global batch is identical for any process count.

Two pipelines make the pixels: tf.data (`pipeline="tfdata"`; any source, files decoded in parallel) and
a host loader whose batches are augmented on the devices in JAX (`pipeline="jax"`: in-memory sources and
image folders, no TensorFlow needed; host.py). `auto` takes the JAX loader for in-memory sources, and for
files where TensorFlow is not installed (GPU images often lack it), else tf.data; so a run on in-memory
data never imports TensorFlow (seconds of start-up) and no tf.data threads compete with the train step for
the CPU. An image folder's training split with its decode-once cache (data/cache.py: the chain's deterministic
head kept as uint8 rows) is read by the host loader from the cache's rows whatever TensorFlow offers, unless
`pipeline="tfdata"` or `data_cache=""`. Streamed TFDS datasets always need TensorFlow.

Batches are this process's share of each global batch, flat: dicts of `image` [local_batch, (views,) H, W,
C] float32, `label` [local_batch] int32 and, in evaluation, `mask` (False on the padding of the last
batch). The parallel strategy lays them out over its devices (`parallel.py`, `put_batch`).

Since the epoch's order and augmentation draws are known up front, `train_batches(..., start_batch=k)`
starts a resumed epoch at batch k without reading or decoding the examples of batches 0..k-1.
"""

import importlib.util
from collections.abc import Iterator

import jax
import numpy as np

from jaxcnn import parallel
from jaxcnn.data import augment, cache, folder, host, recipe, stats, tf_import, tf_ops, tfds_stream
from jaxcnn.data.sources import Dataset, FileSplit, Split, TfdsSplit

PIPELINES = ("auto", "tfdata", "jax")


def local_batch_size(global_batch: int) -> int:
  """This process's share of a global batch."""
  processes = jax.process_count()
  return parallel.split_evenly(global_batch, processes, "batch size", f"the {processes} processes")


def channel_stats(split: Split) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std of the images in [0, 1] (computed on the training split)."""
  computed = stats.compute(split)
  return np.float32(computed["mean"]), np.float32(computed["std"])


def num_batches(num_examples: int, global_batch: int, *, drop_remainder: bool) -> int:
  return num_examples // global_batch if drop_remainder else -(-num_examples // global_batch)


def eval_images_per_step(eval_batch_size: int, views: int | None, num_examples: int) -> int:
  """Images in one global eval batch. `eval_batch_size` counts views, the forward passes one eval step runs at
  once: `eval_batch_size // views` images (AlexNet's ten crops: a tenth), rounded down to a multiple of the device
  count, at least one image per device. A split smaller than that is padded only to the next device multiple."""
  if eval_batch_size < 1:
    raise ValueError(f"eval_batch_size must be >= 1 (views evaluated at once), got {eval_batch_size}")
  devices = jax.device_count()
  per_step = max(eval_batch_size // (views or 1) // devices, 1) * devices
  return min(per_step, -(-max(num_examples, 1) // devices) * devices)


def shard(
  order: np.ndarray, global_batch: int, process_index: int | None = None, process_count: int | None = None
) -> np.ndarray:
  """[steps, local_batch]: process `process_index`'s columns of each global batch of `order`."""
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  local_batch = parallel.split_evenly(global_batch, process_count, "batch size", f"{process_count} processes")
  start = process_index * local_batch
  return order.reshape(-1, global_batch)[:, start : start + local_batch]


def train_order(num_examples: int, global_batch: int, seed: int, epoch: int) -> np.ndarray:
  """Epoch `epoch`'s example order, cut to whole global batches."""
  steps = num_batches(num_examples, global_batch, drop_remainder=True)
  if steps == 0:
    raise ValueError(f"batch size {global_batch} is larger than the {num_examples} training examples")
  return np.random.default_rng([seed, epoch]).permutation(num_examples)[: steps * global_batch]


def _source_sizes(split, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  if isinstance(split, Split):
    return np.full(len(order), split.images.shape[1]), np.full(len(order), split.images.shape[2])
  return split.sizes[order, 0], split.sizes[order, 1]


def _local(order, plan: augment.Plan, global_batch: int, mask=None, start_batch: int = 0):
  """This process's (indices, plan, mask) rows of batches start_batch.., [steps, local_batch] each."""
  rows = np.arange(len(order))
  local = shard(rows, global_batch)[start_batch:]
  return order[local], plan.rows(local), None if mask is None else mask[local]


def _tf_batches(split, indices, plan: augment.Plan, mask, chain, mean, std, out_hw):
  """A tf.data pipeline over this process's rows [steps, local_batch], yielding [local_batch, ...] batches.

  Each batch also carries `index` (the examples' indices in the split), which the caller removes: it
  names the files of a batch that fails to decode.
  """
  tf = tf_import.tensorflow()
  local_batch = indices.shape[1]
  mean, std = tf.constant(np.float32(mean)), tf.constant(np.float32(std))
  columns = {"index": indices.reshape(-1), **{k: v.reshape(-1, *v.shape[2:]) for k, v in plan.as_dict().items()}}
  if mask is not None:
    columns["mask"] = mask.reshape(-1)
  labels = tf.constant(split.labels)

  def with_label(batch):
    batch = {k: batch[k] for k in ("index", "image", "mask") if k in batch}
    return {**batch, "label": tf.gather(labels, batch["index"])}

  if isinstance(split, Split):
    images = tf.constant(split.images)
    if chain.is_identity:  # plain normalisation of whole images: one gather per batch

      def whole(batch):
        return {**batch, "image": (tf.cast(tf.gather(images, batch["index"]), tf.float32) / 255.0 - mean) / std}

      ds = tf.data.Dataset.from_tensor_slices(columns).batch(local_batch).map(whole, tf.data.AUTOTUNE)
      return ds.map(with_label, tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def pixels(row):
      return tf_ops.views_of_image(tf.gather(images, row["index"]), row, out_hw)
  else:
    paths, use_pil = tf.constant(split.paths.astype(str)), tf.constant(split.use_pil)

    def pixels(row):
      data = tf.io.read_file(tf.gather(paths, row["index"]))
      return tf_ops.views_of_file(data, tf.gather(use_pil, row["index"]), row, out_hw, chain.num_views or 1)

  def example(row):
    return {**row, "image": tf_ops.finish_example(pixels(row), row, chain, mean, std)}

  ds = tf.data.Dataset.from_tensor_slices(columns).map(example, tf.data.AUTOTUNE).batch(local_batch)
  return ds.map(with_label, tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _naming_bad_files(split, indices: np.ndarray, batches) -> Iterator[dict]:
  """Yields the batches without `index`; a decode failure becomes an error naming the file."""
  tf = tf_import.tensorflow()
  iterator = batches.as_numpy_iterator()
  step = 0
  while True:
    try:
      batch = next(iterator)
    except StopIteration:
      return
    except tf.errors.InvalidArgumentError as e:
      if not isinstance(split, FileSplit):
        raise
      # tf.data keeps the order, so the failing batch is the one after the last delivered.
      raise folder.undecodable(split.paths[indices[step]], e) from None
    step += 1
    batch.pop("index")
    yield batch


def _backend(pipeline: str, split) -> str:
  if pipeline not in PIPELINES:
    raise ValueError(f"pipeline must be one of {', '.join(PIPELINES)}, got {pipeline!r}")
  if pipeline == "auto":
    in_memory, has_tf = isinstance(split, Split), importlib.util.find_spec("tensorflow") is not None
    pipeline = "jax" if in_memory or not has_tf else "tfdata"
  return pipeline


def _batches(split, order, plan, mask, chain, mean, std, global_batch, pipeline, start_batch=0):
  out_hw = chain.output_size(split.images.shape[1:3] if isinstance(split, Split) else (None, None))
  indices, plan, mask = _local(order, plan, global_batch, mask, start_batch)
  if _backend(pipeline, split) == "tfdata":
    return _naming_bad_files(split, indices, _tf_batches(split, indices, plan, mask, chain, mean, std, out_hw))
  if isinstance(split, FileSplit):
    return host.file_batches(split, indices, plan, mask, chain, mean, std, out_hw)
  return host.batches(split, indices, plan, mask, chain, mean, std, out_hw)


def train_batches(
  split,
  *,
  global_batch: int,
  seed: int,
  epoch: int,
  mean,
  std,
  augment_chain=None,
  pipeline: str = "auto",
  start_batch: int = 0,
  row_cache: "cache.RowCache | None" = None,
) -> Iterator[dict]:
  """Epoch `epoch`'s shuffled, augmented training batches from batch `start_batch` on (a resumed epoch);
  the incomplete last batch is dropped. Batches before start_batch are neither read nor decoded.

  `row_cache` (an image folder's `cache.RowCache` for this split and chain): the chain's head is read from its
  rows (decoded and stored the first time a row is read) and only the tail is planned and applied."""
  chain = augment_chain or augment.Chain("", train=True)
  if isinstance(split, TfdsSplit):
    return tfds_stream.batches(
      split, chain, mean, std, local_batch_size(global_batch), seed=seed, epoch=epoch, start_batch=start_batch
    )
  order = train_order(len(split), global_batch, seed, epoch)
  if row_cache is not None:
    _check_cache(row_cache, split, pipeline)
    rng = np.random.default_rng([seed, epoch, 1])
    indices, plan, _, out_hw = _cached_plan(row_cache, chain, order, global_batch, rng, start_batch=start_batch)
    return host.cached_batches(split, indices, plan, None, row_cache.head.tail, mean, std, out_hw, row_cache)
  src_h, src_w = _source_sizes(split, order)
  # A second stream from (seed, epoch): the augmentations do not change the order, and vice versa. The
  # whole epoch is drawn even when it starts at start_batch, so that its batches are the same numbers.
  plan = chain.plan(np.random.default_rng([seed, epoch, 1]), src_h, src_w)
  return _batches(split, order, plan, None, chain, mean, std, global_batch, pipeline, start_batch)


def _check_cache(row_cache, split, pipeline: str) -> None:
  if row_cache.split is not split or pipeline == "tfdata":
    raise ValueError("row_cache must be the cache of this split, with pipeline auto or jax")


def _cached_plan(row_cache, chain, order, global_batch: int, rng, mask=None, start_batch: int = 0):
  """(this process's rows [steps, local_batch], their tail plan, mask, the output size) of a pass over `order` read
  from a row cache. The head draws no random numbers: the tail draws from `rng` what the whole chain would, in the
  rows' pixels."""
  plan = row_cache.head.tail.plan(rng, *row_cache.shapes[order].T)
  indices, plan, mask = _local(order, plan, global_batch, mask, start_batch)
  return indices, plan, mask, chain.output_size((None, None))


def cached_train_views(split, row_cache, chain, *, global_batch: int, seed: int, epoch: int) -> Iterator[np.ndarray]:
  """The host's part of `train_batches` from a row cache: uint8 views [local_batch, views, h, w, 3] per step,
  before the device mirrors, lights and normalises them (`python -m jaxcnn.bench.pipeline` times it apart: on a
  GPU host that part runs on the GPU)."""
  order = train_order(len(split), global_batch, seed, epoch)
  indices, plan, _, out_hw = _cached_plan(
    row_cache, chain, order, global_batch, np.random.default_rng([seed, epoch, 1])
  )
  return host.cached_views(split, indices, plan.windows, out_hw, row_cache)


def eval_batches(
  split,
  *,
  global_batch: int,
  mean,
  std,
  augment_chain=None,
  pipeline: str = "auto",
  row_cache: "cache.RowCache | None" = None,
) -> Iterator[dict]:
  """Every example exactly once, in order; the last batch is padded and its padding masked out. `row_cache` (the
  split's `cache.RowCache` under this chain): as in `train_batches`."""
  chain = augment_chain or augment.Chain("", train=False)
  if isinstance(split, TfdsSplit):
    return tfds_stream.batches(split, chain, mean, std, local_batch_size(global_batch))
  steps = num_batches(len(split), global_batch, drop_remainder=False)
  padded = np.arange(steps * global_batch)
  mask = padded < len(split)
  order = np.where(mask, padded, 0)
  if row_cache is not None:
    _check_cache(row_cache, split, pipeline)
    indices, plan, mask, out_hw = _cached_plan(row_cache, chain, order, global_batch, np.random.default_rng(0), mask)
    return host.cached_batches(split, indices, plan, mask, row_cache.head.tail, mean, std, out_hw, row_cache)
  src_h, src_w = _source_sizes(split, order)
  plan = chain.plan(np.random.default_rng(0), src_h, src_w)
  return _batches(split, order, plan, mask, chain, mean, std, global_batch, pipeline)


class InputPipeline:
  """The train loop's view of the data: statistics, augmentation chains, model input shape, batches."""

  def __init__(self, config, dataset: Dataset, statistics: dict | None = None):
    """`statistics`: those of a run being continued or evaluated (as `self.stats` was then), so that its images
    are normalised as they were in training; by default the dataset's (`stats.for_dataset`)."""
    self.config, self.dataset = config, dataset
    self.stats_from_run = bool(statistics)
    self.stats = statistics or stats.for_dataset(config, dataset)
    self.mean, self.std = np.float32(self.stats["mean"]), np.float32(self.stats["std"])
    self.recipe = recipe.fit(
      config.train_augment,
      config.eval_augment,
      image_size=config.image_size,
      source_shape=dataset.image_shape,
      stats=self.stats,
    )
    self.train_chain, self.eval_chain = self.recipe.train, self.recipe.eval
    source_hw, channels = dataset.image_shape[:2], dataset.image_shape[2]
    train_hw, eval_hw = self.train_chain.output_size(source_hw), self.eval_chain.output_size(source_hw)
    if train_hw != eval_hw:
      raise ValueError(
        f"training images are {train_hw} ({self.train_chain.spec!r}) but evaluation images are "
        f"{eval_hw} ({self.eval_chain.spec!r}); the model needs one size"
      )
    self.image_shape = (*train_hw, channels)
    for name, split in dataset.splits.items():
      self._check_fits(name, split)
    self._row_caches, self._cache_note = {}, None

  @property
  def evaluated_splits(self) -> list[str]:
    """The splits a run of this config evaluates: validation after each epoch, and the split --mode=eval reads
    afterwards (`eval_split`; test is also evaluated after every epoch where `stop_at_accuracy_split` is test)."""
    test = ("test",) if self.config.get("stop_at_accuracy_split") == "test" else ()
    names = [name for name in ("validation", self.config.eval_split, *test) if name in self.dataset.splits]
    return list(dict.fromkeys(names))

  def row_cache(self, name: str = "train") -> "cache.RowCache | None":
    """The decode-once cache of the image-folder split `name` under its chain (the train chain's head for
    "train", the eval chain's for the others; opened, and made if missing, at the first call), or None: not a
    folder, pipeline=tfdata, data_cache off, or unavailable (a warning said why)."""
    split, config = self.dataset.splits.get(name), self.config
    if self._cache_note is None:
      setting = config.get("data_cache", "auto")
      if config.get("pipeline", "auto") == "tfdata":
        self._cache_note = "data cache: not used with pipeline=tfdata (files decoded every epoch)"
      elif cache.directory(setting) is None:
        self._cache_note = f"data cache: off (data_cache={setting!r}; files decoded every epoch)"
      else:
        self._cache_note = ""
    if not isinstance(split, FileSplit) or self._cache_note:
      return None
    if name not in self._row_caches:
      config, chain = self.config, self.train_chain if name == "train" else self.eval_chain
      self._row_caches[name] = cache.open_cache(
        config.get("data_cache", "auto"),
        split,
        chain,
        config.get("data_cache_max_disk_fraction", 0.5),
        name,
        config.get("data_cache_format", "auto"),
      )
    return self._row_caches[name]

  def _check_fits(self, name: str, split) -> None:
    """Plans every example of a split once, so that a chain its images cannot take fails before training."""
    if isinstance(split, TfdsSplit):  # sizes unknown until read
      return
    chain = self.train_chain if name == "train" else self.eval_chain
    try:
      chain.plan(np.random.default_rng(0), *_source_sizes(split, np.arange(len(split))))
    except ValueError as e:
      raise ValueError(f"{self.dataset.name} {name} split, augmentation {chain.spec!r}: {e}") from None

  def describe(self) -> list[str]:
    """What the run will read and how, one line each, for the start of the log."""
    dataset, config = self.dataset, self.config
    counts = ", ".join(f"{name} {len(split):,}" for name, split in dataset.splits.items())
    where = f" from {dataset.root}" if dataset.root else ""
    source = (
      "x".join(map(str, dataset.image_shape))
      if None not in dataset.image_shape
      else f"images of varying size, {dataset.image_shape[2]} channels"
    )
    lines = [
      f"data: {dataset.name}{where}: {counts} images; {dataset.num_classes} classes",
      f"input: {'x'.join(map(str, self.image_shape))} (source: {source})",
    ]
    if dataset.validation:
      lines.insert(1, dataset.validation)
    for kind, spec, chain in (
      ("train", config.train_augment, self.train_chain),
      ("eval", config.eval_augment, self.eval_chain),
    ):
      named = f" (preset {spec!r})" if isinstance(spec, str) and chain.spec != spec.strip() else ""
      views = f"; {chain.num_views} views" if chain.num_views else ""
      lines.append(f"{kind} augmentation: {chain.spec or 'none'}{named}{views}")
    lines += self.recipe.notes
    origin = {
      "file": f"statistics file {self.stats.get('path')}",
      "computed": "all training images",
      "sampled": "a sample of training images",
      "torchvision": "what torchvision's pretrained weights expect",
    }[self.stats["origin"]]
    mean, std = ([round(float(x), 4) for x in v] for v in (self.mean, self.std))
    kept = ", as the run started: from its checkpoint" if self.stats_from_run else ""
    lines.append(f"normalisation: mean {mean}, std {std} ({origin}{kept})")
    return lines + self._describe_files()

  def _describe_files(self) -> list[str]:
    """The lines of an image folder's host work: the resizer, and the decode-once cache (or why none) of each split
    the run reads. Opening a cache allocates its rows on disk: a test split the run never evaluates (12,500 test
    images under AlexNet's 256-px head: ~3 GB) gets none."""
    read = ["train", *(name for name in self.evaluated_splits if name != "train")]
    splits = {name: self.dataset.splits.get(name) for name in read}
    names = [name for name, split in splits.items() if isinstance(split, FileSplit) and len(split)]
    caches = {name: self.row_cache(name) for name in names}
    train, lines = self.dataset.splits.get("train"), []
    if isinstance(train, FileSplit) and (caches["train"] or _backend(self.config.pipeline, train) == "jax"):
      line = f"{folder.resizer_version()} (JPEG decoding, bilinear resize at half-pixel centres; ${folder.RESIZE_ENV})"
      lines.append(f"host images: {line}")
    if names and self._cache_note:  # off, or tfdata
      return [*lines, self._cache_note]
    for name, rows in caches.items():
      lines.append(rows.describe() if rows else f"data cache ({name}): unavailable (see the warning above)")
    return lines

  def train_batches(self, epoch: int, start_batch: int = 0) -> Iterator[dict]:
    """Epoch `epoch`'s batches from batch `start_batch` on (a run resumed mid-epoch)."""
    return train_batches(
      self.dataset.split("train"),
      global_batch=self.config.batch_size,
      seed=self.config.seed,
      epoch=epoch,
      mean=self.mean,
      std=self.std,
      augment_chain=self.train_chain,
      pipeline=self.config.pipeline,
      start_batch=start_batch,
      row_cache=self.row_cache(),
    )

  def cached_train_views(self, epoch: int) -> Iterator[np.ndarray]:
    """The host's part of `train_batches(epoch)` from the folder's row cache (`cached_train_views`)."""
    return cached_train_views(
      self.dataset.split("train"),
      self.row_cache(),
      self.train_chain,
      global_batch=self.config.batch_size,
      seed=self.config.seed,
      epoch=epoch,
    )

  def eval_images_per_step(self, split) -> int:
    """Images per global eval batch of `split` (a name or a split) by `config.eval_batch_size`'s views."""
    split = self.dataset.split(split) if isinstance(split, str) else split
    return eval_images_per_step(self.config.eval_batch_size, self.eval_chain.num_views, len(split))

  def eval_batch_shapes(self, images: int) -> dict:
    """(shape, dtype) of this process's share of an eval batch of `images` images, as `eval_batches` yields it."""
    local, views = local_batch_size(images), self.eval_chain.num_views
    shape = (local, *((views,) if views else ()), *self.image_shape)
    return {"image": (shape, np.float32), "label": ((local,), np.int32), "mask": ((local,), np.bool_)}

  def train_batch_shapes(self) -> dict:
    """(shape, dtype) of this process's share of a training batch, as `train_batches` yields it."""
    local = local_batch_size(self.config.batch_size)
    return {"image": ((local, *self.image_shape), np.float32), "label": ((local,), np.int32)}

  def eval_batches(self, split, images_per_step: int | None = None) -> Iterator[dict]:
    """Every example of `split` (a name or a split) once, `images_per_step` images per global batch (by default
    `eval_images_per_step`'s); the memory plan may give fewer."""
    name = split if isinstance(split, str) else next((k for k, v in self.dataset.splits.items() if v is split), None)
    split = self.dataset.split(split) if isinstance(split, str) else split
    return eval_batches(
      split,
      row_cache=self.row_cache(name) if name and name != "train" else None,
      global_batch=images_per_step or self.eval_images_per_step(split),
      mean=self.mean,
      std=self.std,
      augment_chain=self.eval_chain,
      pipeline=self.config.pipeline,
    )
