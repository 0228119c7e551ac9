"""Reader for the IDX format of MNIST and Fashion-MNIST (optionally gzipped).

Format (http://yann.lecun.com/exdb/mnist/): big-endian magic 0x0000 <dtype> <ndim>, then ndim uint32
sizes, then the data. Only unsigned bytes (dtype 0x08) occur in these datasets.
"""

import gzip
import pathlib

import numpy as np

_UBYTE = 0x08


def read(path: pathlib.Path) -> np.ndarray:
  """Reads one IDX file into a uint8 array, checking its header against its length."""
  opener = gzip.open if path.suffix == ".gz" else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise ValueError(f"{path}: cannot read IDX file ({e})") from None
  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise ValueError(f"{path}: not an IDX file (bad magic number)")
  if data[2] != _UBYTE:
    raise ValueError(f"{path}: IDX element type 0x{data[2]:02x} is not unsigned byte")
  ndim = data[3]
  header = 4 + 4 * ndim
  if len(data) < header:
    raise ValueError(f"{path}: truncated IDX header")
  shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
  expected = header + int(np.prod(shape))
  if len(data) != expected:
    raise ValueError(f"{path}: IDX header promises {expected} bytes for shape {shape}, file has {len(data)}")
  return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def write(path: pathlib.Path, array: np.ndarray) -> None:
  """Writes a uint8 array as a gzipped IDX file (used by tests and by dataset export)."""
  array = np.ascontiguousarray(array, dtype=np.uint8)
  header = bytes([0, 0, _UBYTE, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.tobytes())


def find_file(directory: pathlib.Path, stem: str) -> pathlib.Path | None:
  """The file `stem` or `stem.gz` in directory (the common MNIST-style names), or None."""
  for name in (stem + ".gz", stem):
    if (directory / name).is_file():
      return directory / name
  return None


def load_split(directory: pathlib.Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
  """Images [N, 28, 28, 1] and labels [N] of one split (`train` or `t10k`) in directory."""
  paths = {kind: find_file(directory, f"{prefix}-{kind}-idx{nd}-ubyte") for kind, nd in (("images", 3), ("labels", 1))}
  missing = [f"{prefix}-{kind}-idx*-ubyte[.gz]" for kind, p in paths.items() if p is None]
  if missing:
    raise FileNotFoundError(f"{directory}: missing {', '.join(missing)}")
  images, labels = read(paths["images"]), read(paths["labels"])
  if images.ndim != 3 or labels.ndim != 1:
    raise ValueError(
      f"{paths['images']}: expected [N, H, W] images and [N] labels, got {images.shape} and {labels.shape}"
    )
  if len(images) != len(labels):
    raise ValueError(f"{paths['images']}: {len(images)} images but {paths['labels'].name} has {len(labels)} labels")
  return images[..., None], labels.astype(np.int32)
