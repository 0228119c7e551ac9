"""Dataset sources: each returns the whole dataset as uint8 NHWC arrays in host memory.

Where the files come from (first that has them): `config.data_dir`, `$JAXCNN_DATA_DIR`, Debian's
`/usr/share/datasets/<name>` (package `dataset-fashion-mnist`), then a TFDS download. A directory
may hold the files itself or a sub-directory named after the dataset.
"""

import dataclasses
import os
import pathlib

import numpy as np
from absl import logging

from jaxcnn.data import idx

DATA_DIR_ENV = "JAXCNN_DATA_DIR"
# The validation split must not move when the training seed changes, so runs with different seeds
# are compared on the same held-out images.
VALIDATION_SPLIT_SEED = 20260101


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # uint8 [N, H, W, C]
  labels: np.ndarray  # int32 [N]

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  splits: dict[str, Split]
  class_names: tuple[str, ...]

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.splits["train"].images.shape[1:]

  def split(self, name: str) -> Split:
    if name not in self.splits:
      raise ValueError(f"dataset {self.name!r} has no split {name!r}; it has {', '.join(sorted(self.splits))}"
                       + (" (set --config.validation_size > 0 for a validation split)" if name == "validation" else ""))
    return self.splits[name]


@dataclasses.dataclass(frozen=True)
class _IdxDataset:
  tfds_name: str
  debian_dir: str
  class_names: tuple[str, ...]


_IDX_DATASETS = {
    "fashion_mnist": _IdxDataset(
        "fashion_mnist", "/usr/share/datasets/fashion-mnist",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")),
    "mnist": _IdxDataset("mnist", "/usr/share/datasets/mnist", tuple(str(d) for d in range(10))),
}


def names() -> list[str]:
  return sorted(_IDX_DATASETS)


def _user_data_dir(data_dir: str) -> tuple[str, str] | None:
  """(directory, where it was named) when the user named one: the config first, then the environment."""
  if data_dir:
    return data_dir, "--config.data_dir"
  if os.environ.get(DATA_DIR_ENV):
    return os.environ[DATA_DIR_ENV], f"${DATA_DIR_ENV}"
  return None


def _load_idx(name: str, spec: _IdxDataset, data_dir: str) -> dict[str, Split]:
  user_dir = _user_data_dir(data_dir)
  if user_dir:
    root = pathlib.Path(user_dir[0])
    candidates = [root, root / name, root / name.replace("_", "-")]
  else:
    candidates = [pathlib.Path(spec.debian_dir)]
  for directory in candidates:
    if idx.find_file(directory, "train-images-idx3-ubyte") is not None:
      logging.info("Reading %s IDX files from %s", name, directory)
      return {split: Split(*idx.load_split(directory, prefix)) for split, prefix in (("train", "train"), ("test", "t10k"))}
  if user_dir:
    # A directory the user named that lacks the files is a mistake to report, not a reason to download.
    raise FileNotFoundError(f"no {name} IDX files (train-images-idx3-ubyte[.gz], ...) in {user_dir[0]} "
                            f"(from {user_dir[1]}) or its sub-directory {name}/")
  return _load_tfds(name, spec.tfds_name, [str(d) for d in candidates])


def _load_tfds(name: str, tfds_name: str, tried: list[str]) -> dict[str, Split]:
  from jaxcnn.data import tf_import  # TensorFlow only when this fallback is taken.

  tfds = tf_import.tensorflow_datasets()
  logging.info("No local %s files (looked in %s); trying the TFDS download", name, ", ".join(tried))
  try:
    arrays = tfds.load(tfds_name, split=["train", "test"], batch_size=-1, as_supervised=True)
  except Exception as e:  # noqa: BLE001  (any download/prepare failure gets the same advice)
    raise FileNotFoundError(
        f"{name} not found: no IDX files in {', '.join(tried)} and the TFDS download failed ({type(e).__name__}: "
        f"{str(e).splitlines()[0] if str(e) else ''}). Install Debian's dataset-fashion-mnist "
        f"(apt-get install dataset-fashion-mnist), or point --config.data_dir / ${DATA_DIR_ENV} at the IDX files."
    ) from None
  splits = {}
  for split, (images, labels) in zip(("train", "test"), tfds.as_numpy(arrays)):
    splits[split] = Split(np.asarray(images, np.uint8), np.asarray(labels, np.int32))
  return splits


def _carve_validation(train: Split, size: int) -> tuple[Split, Split]:
  if not 0 < size < len(train):
    raise ValueError(f"validation_size must be in [0, {len(train)}), got {size}")
  order = np.random.default_rng(VALIDATION_SPLIT_SEED).permutation(len(train))
  keep, held = np.sort(order[:-size]), np.sort(order[-size:])
  return Split(train.images[keep], train.labels[keep]), Split(train.images[held], train.labels[held])


def load(config) -> Dataset:
  """Loads `config.dataset` into memory, with a validation split of `config.validation_size`."""
  if config.dataset not in _IDX_DATASETS:
    raise ValueError(f"unknown dataset {config.dataset!r}; known datasets: {', '.join(names())}")
  spec = _IDX_DATASETS[config.dataset]
  splits = _load_idx(config.dataset, spec, config.data_dir)
  for split_name, split in splits.items():
    if len(split) == 0:
      raise ValueError(f"{config.dataset}: split {split_name!r} is empty")
    bad = (split.labels < 0) | (split.labels >= len(spec.class_names))
    if bad.any():
      raise ValueError(f"{config.dataset}: split {split_name!r} has {int(bad.sum())} labels outside "
                       f"[0, {len(spec.class_names)}), e.g. {int(split.labels[bad][0])} at index {int(np.argmax(bad))}")
  if config.validation_size < 0:
    raise ValueError(f"validation_size must be >= 0, got {config.validation_size}")
  if config.validation_size:
    splits["train"], splits["validation"] = _carve_validation(splits["train"], config.validation_size)
  return Dataset(config.dataset, splits, spec.class_names)
