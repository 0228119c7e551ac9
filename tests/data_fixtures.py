"""Tiny datasets in the formats users bring: CIFAR pickles and binaries, folders of image files."""

import pathlib
import pickle

import numpy as np
from PIL import Image


def write_cifar_python(root: pathlib.Path, name: str = "cifar10", per_batch: int = 8, seed: int = 0) -> pathlib.Path:
  """cifar-10-batches-py (5 train batches + test) or cifar-100-python (train + test), as pickles."""
  rng = np.random.default_rng(seed)
  ten = name == "cifar10"
  directory = root / ("cifar-10-batches-py" if ten else "cifar-100-python")
  directory.mkdir(parents=True)
  files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if ten else ["train", "test"]
  key = b"labels" if ten else b"fine_labels"
  for f in files:
    batch = {
      b"data": rng.integers(0, 256, (per_batch, 3072), np.uint8),
      key: rng.integers(0, 10 if ten else 100, per_batch).tolist(),
    }
    (directory / f).write_bytes(pickle.dumps(batch, protocol=2))
  meta_key, meta_file = (b"label_names", "batches.meta") if ten else (b"fine_label_names", "meta")
  names = [f"class{i}".encode() for i in range(10 if ten else 100)]
  (directory / meta_file).write_bytes(pickle.dumps({meta_key: names}, protocol=2))
  return directory


def write_cifar_binary(root: pathlib.Path, name: str = "cifar100", records: int = 6, seed: int = 0):
  """cifar-10-batches-bin or cifar-100-binary: label byte(s) then 3072 pixel bytes per record."""
  rng = np.random.default_rng(seed)
  ten = name == "cifar10"
  directory = root / ("cifar-10-batches-bin" if ten else "cifar-100-binary")
  directory.mkdir(parents=True)
  files = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"] if ten else ["train.bin", "test.bin"]
  for f in files:
    labels = rng.integers(0, 10 if ten else 100, (records, 1 if ten else 2), np.uint8)
    np.concatenate([labels, rng.integers(0, 256, (records, 3072), np.uint8)], axis=1).tofile(directory / f)
  return directory


def _image(mode: str, size, rng) -> Image.Image:
  height, width = size
  rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8))
  if mode == "I;16":
    return Image.fromarray(rng.integers(0, 65536, (height, width)).astype(np.uint16))
  return rgb.convert(mode)


# (file name, Pillow mode, format): every mode and format the folder source promises to read.
MIXED = [
  ("a.jpg", "RGB", "JPEG"),
  ("b.JPEG", "L", "JPEG"),
  ("c.jpeg", "CMYK", "JPEG"),
  ("d.png", "RGBA", "PNG"),
  ("e.PNG", "P", "PNG"),
  ("f.png", "I;16", "PNG"),
  ("g.bmp", "RGB", "BMP"),
  ("h.BMP", "P", "BMP"),
  ("i.bmp", "L", "BMP"),
]


def write_image_folder(
  root: pathlib.Path, classes=("cat", "dog"), splits=("train",), per_class=9, seed=0, size=None
) -> pathlib.Path:
  """root[/split]/class/*.{jpg,png,bmp} in every mode, random sizes (or `size`), plus a stray text file."""
  rng = np.random.default_rng(seed)
  for split in splits:
    base = root / split if split else root
    for name in classes:
      directory = base / name
      directory.mkdir(parents=True)
      for i in range(per_class):
        file_name, mode, fmt = MIXED[i % len(MIXED)]
        hw = size or (int(rng.integers(30, 60)), int(rng.integers(30, 60)))
        _image(mode, hw, rng).save(directory / f"{i}{file_name}", fmt)
      (directory / "notes.txt").write_text("not an image")
  return root
