"""CIFAR-10 and CIFAR-100 as distributed (https://www.cs.toronto.edu/~kriz/cifar.html), from a local folder.

Both versions are read: the Python pickles (`cifar-10-batches-py`, `cifar-100-python`) and the binary
one (`cifar-10-batches-bin`, `cifar-100-binary`). The pickles are opened with an unpickler that only
builds what they contain (dicts, lists, strings, bytes, numbers and NumPy uint8 arrays): a file that asks
for anything else, e.g. a function to call, is refused rather than run.
"""

import codecs
import dataclasses
import io
import pathlib
import pickle

import numpy as np

_PIXELS = 32 * 32 * 3


@dataclasses.dataclass(frozen=True)
class Layout:
  python_dir: str
  binary_dir: str
  python_files: dict  # split -> file names
  binary_files: dict
  label_key: bytes  # in the pickles
  label_bytes: int  # per record in the binary files; the fine label is the last
  meta_file: str
  meta_key: bytes
  names_file: str  # class names of the binary version


LAYOUTS = {
  "cifar10": Layout(
    "cifar-10-batches-py",
    "cifar-10-batches-bin",
    {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]},
    b"labels",
    1,
    "batches.meta",
    b"label_names",
    "batches.meta.txt",
  ),
  "cifar100": Layout(
    "cifar-100-python",
    "cifar-100-binary",
    {"train": ["train"], "test": ["test"]},
    {"train": ["train.bin"], "test": ["test.bin"]},
    b"fine_labels",
    2,
    "meta",
    b"fine_label_names",
    "fine_label_names.txt",
  ),
}

_RECONSTRUCT, _ = np.ndarray(0).__reduce__()[:2]
# NumPy arrays and dtypes, and the bytes-from-latin-1 helper of protocol-2 pickles written by Python 3.
_ALLOWED = {
  ("_codecs", "encode"): codecs.encode,
  ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
  ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
  ("numpy", "ndarray"): np.ndarray,
  ("numpy", "dtype"): np.dtype,
}


class _RestrictedUnpickler(pickle.Unpickler):
  def find_class(self, module, name):
    if (module, name) not in _ALLOWED:
      raise pickle.UnpicklingError(
        f"refusing to load {module}.{name}: a CIFAR pickle holds only arrays, lists and strings"
      )
    return _ALLOWED[(module, name)]


def read_pickle(path: pathlib.Path) -> dict:
  """A CIFAR batch file as a dict with bytes keys (the files were written by Python 2)."""
  try:
    with open(path, "rb") as f:
      content = _RestrictedUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
    raise ValueError(f"{path}: not a CIFAR pickle ({e})") from None
  if not isinstance(content, dict):
    raise ValueError(f"{path}: not a CIFAR pickle (holds a {type(content).__name__}, not a dict)")
  return content


def _python_split(directory: pathlib.Path, layout: Layout, split: str):
  images, labels = [], []
  for name in layout.python_files[split]:
    batch = read_pickle(directory / name)
    data, batch_labels = batch.get(b"data"), batch.get(layout.label_key)
    if (
      not isinstance(data, np.ndarray)
      or data.ndim != 2
      or data.shape[1] != _PIXELS
      or batch_labels is None
      or len(batch_labels) != len(data)
    ):
      raise ValueError(f"{directory / name}: expected {layout.label_key.decode()} and data of [N, {_PIXELS}]")
    images.append(data)
    labels.append(np.asarray(batch_labels))
  return np.concatenate(images), np.concatenate(labels)


def _binary_split(directory: pathlib.Path, layout: Layout, split: str):
  record = layout.label_bytes + _PIXELS
  images, labels = [], []
  for name in layout.binary_files[split]:
    raw = np.fromfile(directory / name, np.uint8)
    if raw.size == 0 or raw.size % record:
      raise ValueError(f"{directory / name}: {raw.size} bytes is not a whole number of {record}-byte CIFAR records")
    raw = raw.reshape(-1, record)
    images.append(raw[:, layout.label_bytes :])
    labels.append(raw[:, layout.label_bytes - 1])
  return np.concatenate(images), np.concatenate(labels)


def _class_names(directory: pathlib.Path, layout: Layout, binary: bool) -> tuple[str, ...]:
  if binary:
    path = directory / layout.names_file
    return tuple(line.strip() for line in path.read_text().splitlines() if line.strip()) if path.is_file() else ()
  path = directory / layout.meta_file
  return (
    tuple(n.decode() if isinstance(n, bytes) else str(n) for n in read_pickle(path).get(layout.meta_key, []))
    if path.is_file()
    else ()
  )


def find(root: pathlib.Path, name: str) -> tuple[pathlib.Path, bool] | None:
  """(directory, is_binary) of the CIFAR files under root (itself, or the archive's folder inside it)."""
  layout = LAYOUTS[name]
  for directory in (
    root,
    root / name,
    root / layout.python_dir,
    root / name / layout.python_dir,
    root / layout.binary_dir,
    root / name / layout.binary_dir,
  ):
    for binary, files in ((False, layout.python_files), (True, layout.binary_files)):
      if (directory / files["test"][0]).is_file():
        return directory, binary
  return None


def load(directory: pathlib.Path, name: str, binary: bool):
  """({split: (images uint8 [N, 32, 32, 3], labels int32 [N])}, class names)."""
  layout = LAYOUTS[name]
  missing = [
    f
    for files in (layout.binary_files if binary else layout.python_files).values()
    for f in files
    if not (directory / f).is_file()
  ]
  if missing:
    raise FileNotFoundError(f"{directory}: missing CIFAR file(s) {', '.join(missing)}")
  splits = {}
  for split in ("train", "test"):
    flat, labels = (_binary_split if binary else _python_split)(directory, layout, split)
    # Rows hold the red plane, then green, then blue, each 32x32 row-major.
    images = flat.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    splits[split] = (np.ascontiguousarray(images), labels.astype(np.int32))
  return splits, _class_names(directory, layout, binary)
