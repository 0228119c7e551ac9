"""Dataset sources, chosen by `config.dataset`. In-memory splits hold uint8 NHWC arrays; file-backed
splits hold paths (and each file's size) and are decoded from disk by tf.data or the host loader (pipeline.py).

  fashion_mnist, mnist    IDX files (in memory)
  cifar10, cifar100       the distributed pickles or binary files (in memory)
  synthetic               random images of `config.synthetic.image_shape` (in memory)
  image_folder            one sub-folder per class, under `config.data_dir` (streamed)
  any other TFDS name     `tfds.load` from config.data_dir or by download (in memory when its images have
                          one fixed shape and fit in memory, else streamed)

Where the files come from (first that has them): `config.data_dir`, `$JAXCNN_DATA_DIR`, Debian's
`/usr/share/datasets/<name>` (package `dataset-fashion-mnist`), then a TFDS download. A directory
may hold the files itself or a sub-directory named after the dataset.
"""

import dataclasses
import os
import pathlib
from collections.abc import Collection

import numpy as np
from absl import logging

from jaxcnn.data import cifar, folder, idx

DATA_DIR_ENV = "JAXCNN_DATA_DIR"
# The validation split must not move when the training seed changes, so runs with different seeds
# are compared on the same held-out images.
VALIDATION_SPLIT_SEED = 20260101
# validation_size="auto" on a dataset without a validation split of its own: this share of train, at most MAX.
AUTO_VALIDATION_FRACTION, AUTO_VALIDATION_MAX = 0.1, 5000


@dataclasses.dataclass(frozen=True)
class Split:
  """Images in host memory: the fast gather path of both pipelines."""

  images: np.ndarray  # uint8 [N, H, W, C]
  labels: np.ndarray  # int32 [N]

  def __len__(self) -> int:
    return len(self.labels)

  def subset(self, indices: np.ndarray) -> "Split":
    return Split(self.images[indices], self.labels[indices])


@dataclasses.dataclass(frozen=True)
class FileSplit:
  """Image files that stay on disk; each batch's are decoded by tf.data or the host loader (host.py), or read from
  the decode-once cache's rows (data/cache.py)."""

  paths: np.ndarray  # object [N] of str
  labels: np.ndarray  # int32 [N]
  sizes: np.ndarray  # int32 [N, 2]: (height, width) from each file's header
  use_pil: np.ndarray  # bool [N]: decoded through Pillow (formats TensorFlow decodes wrongly)

  def __len__(self) -> int:
    return len(self.labels)

  def subset(self, indices: np.ndarray) -> "FileSplit":
    return FileSplit(self.paths[indices], self.labels[indices], self.sizes[indices], self.use_pil[indices])


@dataclasses.dataclass(frozen=True)
class TfdsSplit:
  """A TFDS split too large or too irregular for memory, streamed from its prepared files."""

  builder: object  # tfds.core.DatasetBuilder
  split: str
  num_examples: int

  def __len__(self) -> int:
    return self.num_examples


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  splits: dict[str, Split | FileSplit | TfdsSplit]
  class_names: tuple[str, ...]
  root: pathlib.Path | None = None  # where the files are: the default home of the dataset's statistics
  validation: str = ""  # where the validation split comes from and which setting chose it, for the start line

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def image_shape(self) -> tuple:
    """The source's (H, W, C); None where sizes vary (files, whose pipelines always give RGB)."""
    split = self.splits["train"] if "train" in self.splits else next(iter(self.splits.values()))
    return tuple(split.images.shape[1:]) if isinstance(split, Split) else (None, None, 3)

  def split(self, name: str) -> Split:
    if name not in self.splits:
      hint = " (set --config.validation_size to 'auto' or > 0 for a validation split)" if name == "validation" else ""
      raise ValueError(f"dataset {self.name!r} has no split {name!r}; it has {', '.join(sorted(self.splits))}{hint}")
    return self.splits[name]


@dataclasses.dataclass(frozen=True)
class _IdxDataset:
  tfds_name: str
  debian_dir: str
  class_names: tuple[str, ...]


_IDX_DATASETS = {
  "fashion_mnist": _IdxDataset(
    "fashion_mnist",
    "/usr/share/datasets/fashion-mnist",
    ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
  ),
  "mnist": _IdxDataset("mnist", "/usr/share/datasets/mnist", tuple(str(d) for d in range(10))),
}


_CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_LOCAL = sorted([*_IDX_DATASETS, *cifar.LAYOUTS, "image_folder", "synthetic"])
# Above this many bytes of pixels a TFDS split is streamed rather than held in host memory.
_TFDS_IN_MEMORY_BYTES = 4 << 30


def _user_data_dir(data_dir: str) -> tuple[str, str] | None:
  """(directory, where it was named) when the user named one: the config first, then the environment."""
  if data_dir:
    return data_dir, "--config.data_dir"
  if os.environ.get(DATA_DIR_ENV):
    return os.environ[DATA_DIR_ENV], f"${DATA_DIR_ENV}"
  return None


def _find_local(name: str, data_dir: str, debian_dir: str, find, what: str):
  """(root, what `find` returned) for the first candidate directory holding the files; None to try TFDS."""
  user_dir = _user_data_dir(data_dir)
  if user_dir:
    root = pathlib.Path(user_dir[0])
    candidates = [root, root / name, root / name.replace("_", "-")]
  else:
    candidates = [pathlib.Path(debian_dir)]
  for directory in candidates:
    found = find(directory)
    if found is not None:
      logging.info("Reading %s from %s", name, directory)
      return directory, found
  if user_dir:
    # A directory the user named that lacks the files is a mistake to report, not a reason to download.
    raise FileNotFoundError(f"no {name} {what} in {user_dir[0]} (from {user_dir[1]}) or its sub-directory {name}/")
  return None


def _load_idx(name: str, data_dir: str, wanted: set[str] | None):
  spec = _IDX_DATASETS[name]
  found = _find_local(
    name,
    data_dir,
    spec.debian_dir,
    lambda d: idx.find_file(d, "train-images-idx3-ubyte") or idx.find_file(d, "t10k-images-idx3-ubyte"),
    "IDX files (train-images-idx3-ubyte[.gz], ...)",
  )
  if found is None:
    hint = (
      f"Install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist), or point "
      f"--config.data_dir / ${DATA_DIR_ENV} at the IDX files."
    )
    return _load_tfds(spec.tfds_name, "", f"no IDX files in {spec.debian_dir}", hint)
  directory = found[0]
  if wanted is not None and "validation" in wanted:
    wanted = wanted | {"train"}  # the validation split is carved from it
  splits = {
    split: Split(*idx.load_split(directory, prefix))
    for split, prefix in (("train", "train"), ("test", "t10k"))
    if wanted is None or split in wanted
  }
  return splits, spec.class_names, directory


def _load_cifar(name: str, data_dir: str):
  found = _find_local(
    name,
    data_dir,
    f"/usr/share/datasets/{name}",
    lambda d: cifar.find(d, name),
    "files (cifar-10-batches-py/, cifar-10-batches-bin/ or the CIFAR-100 equivalents)",
  )
  if found is None:
    return _load_tfds(name, "", f"no local {name} files", f"Point --config.data_dir at the extracted {name} archive.")
  directory, binary = found[1]
  arrays, class_names = cifar.load(directory, name, binary)
  num_classes = 10 if name == "cifar10" else 100
  if not class_names:
    class_names = _CIFAR_CLASSES if name == "cifar10" else tuple(str(i) for i in range(num_classes))
  return {split: Split(*a) for split, a in arrays.items()}, class_names, directory


def _load_folder(config):
  user_dir = _user_data_dir(config.data_dir)
  if not user_dir:
    raise ValueError(f"dataset=image_folder needs --config.data_dir (or ${DATA_DIR_ENV}): the folder of class folders")
  root = pathlib.Path(user_dir[0])
  scanned, class_names, _ = folder.scan(root, skip_bad_images=config.skip_bad_images)
  return {split: FileSplit(*arrays) for split, arrays in scanned.items()}, class_names, root


def _load_synthetic(config):
  spec = config.synthetic
  rng = np.random.default_rng(VALIDATION_SPLIT_SEED)
  splits = {
    split: Split(
      rng.integers(0, 256, (n, *spec.image_shape), np.uint8), rng.integers(0, spec.num_classes, n).astype(np.int32)
    )
    for split, n in (("train", spec.num_train), ("test", spec.num_test))
  }
  return splits, tuple(str(i) for i in range(spec.num_classes)), None


def _load_tfds(name: str, data_dir: str, tried: str = "", hint: str = ""):
  """Any TFDS dataset: prepared in data_dir (TFDS's own default when empty) or downloaded and prepared."""
  from jaxcnn.data import tf_import  # TensorFlow only when a TFDS dataset is used.

  tfds = tf_import.tensorflow_datasets()
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except tfds.core.registered.DatasetNotFoundError:
    raise ValueError(
      f"unknown dataset {name!r}: neither one of jaxcnn's ({', '.join(_LOCAL)}) nor a TFDS dataset"
    ) from None
  logging.info("Loading %s through TFDS (%s)", name, tried or "by name")
  try:
    builder.download_and_prepare()
  except Exception as e:  # noqa: BLE001  (any download/prepare failure gets the same advice)
    first_line = str(e).splitlines()[0] if str(e) else ""
    raise FileNotFoundError(
      f"{name} not found: {tried + ' and ' if tried else ''}the TFDS download/prepare "
      f"failed ({type(e).__name__}: {first_line}). {hint}"
    ) from None
  info = builder.info
  image_key = next((k for k, f in info.features.items() if isinstance(f, tfds.features.Image)), None)
  if image_key is None or "label" not in info.features:
    raise ValueError(f"TFDS dataset {name!r} has no image and label features ({', '.join(info.features)})")
  shape = info.features[image_key].shape
  splits = {}
  for split_name, split_info in info.splits.items():
    key = "validation" if split_name in ("val", "validation") else split_name
    n = split_info.num_examples
    if None not in shape and n * int(np.prod(shape)) <= _TFDS_IN_MEMORY_BYTES:
      batch = tfds.as_numpy(builder.as_dataset(split=split_name, batch_size=-1))
      images = np.asarray(batch[image_key], np.uint8)
      splits[key] = Split(images if images.ndim == 4 else images[..., None], np.asarray(batch["label"], np.int32))
    else:
      splits[key] = TfdsSplit(builder, split_name, n)
  return splits, tuple(info.features["label"].names), pathlib.Path(builder.data_dir)


def _carve_validation(train, size: int):
  if not 0 < size < len(train):
    raise ValueError(f"validation_size must be in [0, {len(train)}) for the {len(train)} training images, got {size}")
  if isinstance(train, TfdsSplit):  # TFDS shuffled the examples when it prepared the files
    return (
      TfdsSplit(train.builder, f"{train.split}[:-{size}]", len(train) - size),
      TfdsSplit(train.builder, f"{train.split}[-{size}:]", size),
    )
  order = np.random.default_rng(VALIDATION_SPLIT_SEED).permutation(len(train))
  return train.subset(np.sort(order[:-size])), train.subset(np.sort(order[-size:]))


def _validation_size(config, num_train: int) -> tuple[int, str]:
  """(how many training images to hold out, the setting that says so): validation_fraction when > 0 (it overrides
  validation_size), else validation_size ("auto": 10%, at most 5,000)."""
  size, fraction = config.validation_size, config.validation_fraction
  if not 0 <= fraction < 1:
    raise ValueError(f"validation_fraction must be in [0, 1), got {fraction}")
  if fraction:
    overridden = "" if size == "auto" else f", which overrides validation_size={size!r}"
    return round(fraction * num_train), f"validation_fraction={fraction:g}{overridden}"
  if size == "auto":
    return min(AUTO_VALIDATION_MAX, round(AUTO_VALIDATION_FRACTION * num_train)), "validation_size='auto'"
  if isinstance(size, bool) or not isinstance(size, int) or size < 0:
    raise ValueError(f"validation_size must be 'auto' or a number of images >= 0, got {size!r}")
  return size, f"validation_size={size}"


def _keep_classes(name: str, splits: dict, class_names: tuple, classes: tuple) -> tuple[dict, tuple]:
  """Only the examples of `classes`, relabelled 0..len(classes)-1 in the order given (transfer studies)."""
  if len(set(classes)) != len(classes) or not all(0 <= c < len(class_names) for c in classes):
    raise ValueError(f"{name}: classes must be distinct indices in [0, {len(class_names)}), got {list(classes)}")
  relabel = np.full(len(class_names), -1, np.int32)
  relabel[list(classes)] = np.arange(len(classes))
  kept = {}
  for split_name, split in splits.items():
    if isinstance(split, TfdsSplit):
      raise ValueError(f"{name}: classes= needs a dataset whose labels are known up front, not a streamed TFDS split")
    indices = np.flatnonzero(relabel[split.labels] >= 0)
    subset = split.subset(indices)
    kept[split_name] = dataclasses.replace(subset, labels=relabel[subset.labels])
  return kept, tuple(class_names[c] for c in classes)


def load(config, needed: Collection[str] | None = None) -> Dataset:
  """Loads `config.dataset`, with a validation split: its own, else carved from train (validation_size/fraction).

  `class_names` come from the data: the folder names, CIFAR's meta files, TFDS's label names, Fashion-MNIST's.
  `needed` names the splits the caller uses (None: all); the IDX files are read for those only (an eval of
  the test split does not decompress the training images), every other source loads all of its splits.
  """
  name = config.dataset
  wanted = None if needed is None else set(needed)
  if not wanted or not wanted <= {"train", "validation", "test"}:
    wanted = None  # none, or a name no source reads alone: all splits, so that `Dataset.split`'s error lists them
  if name in _IDX_DATASETS:
    splits, class_names, root = _load_idx(name, config.data_dir, wanted)
  elif name in cifar.LAYOUTS:
    splits, class_names, root = _load_cifar(name, config.data_dir)
  elif name == "image_folder":
    splits, class_names, root = _load_folder(config)
  elif name == "synthetic":
    splits, class_names, root = _load_synthetic(config)
  else:
    splits, class_names, root = _load_tfds(name, config.data_dir)
  if "train" not in splits and (wanted is None or wanted & {"train", "validation"}):
    raise ValueError(f"{name}: no train split (it has {', '.join(sorted(splits))})")
  for split_name, split in splits.items():
    if len(split) == 0:
      raise ValueError(f"{name}: split {split_name!r} is empty")
    if isinstance(split, TfdsSplit):
      continue
    bad = (split.labels < 0) | (split.labels >= len(class_names))
    if bad.any():
      raise ValueError(
        f"{name}: split {split_name!r} has {int(bad.sum())} labels outside "
        f"[0, {len(class_names)}), e.g. {int(split.labels[bad][0])} at index {int(np.argmax(bad))}"
      )
  if config.classes:
    splits, class_names = _keep_classes(name, splits, class_names, tuple(config.classes))
  validation = ""
  if "train" in splits:
    num_train = len(splits["train"])
    size, setting = _validation_size(config, num_train)
    if "validation" in splits:
      logging.info("%s has its own validation split; validation_size/fraction are not used", name)
      validation = "validation: the dataset's own split (validation_size and validation_fraction are not used)"
    elif size:
      splits["train"], splits["validation"] = _carve_validation(splits["train"], size)
      validation = f"validation: {size:,} of the {num_train:,} training images, carved with a fixed seed ({setting})"
    else:
      validation = f"validation: none ({setting})"
  return Dataset(name, splits, class_names, root, validation)
