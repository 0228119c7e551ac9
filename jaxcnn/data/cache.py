"""Decode once: the deterministic head of an image folder's train chain, kept as uint8 rows on disk.

AlexNet's chain `resize_short(256)|center_crop(256)|random_crop(224)|flip_lr|pca_lighting(0.1)` decodes,
resizes and centre-crops the same pixels every epoch before anything random happens. `head_of(chain)` splits
a chain into that head and the random tail:
- leading `resize`, `resize_short` and `center_crop` ops are the head (AlexNet: `resize_short(256)|
  center_crop(256)`, rows of 256x256; `resize_short(256)` alone gives rows of varying size);
- a chain that starts with scale jittering (`random_resize_short(lo, hi)`, VGG, ResNet) or an Inception crop
  (`random_sized_crop(s, area_low, ...)`, GoogLeNet) keeps the image with its shorter side cut to the largest
  the recipe uses (hi; s / sqrt(area_low)), or the source where it is smaller (`max_short(M)`);
- anything else keeps the decoded source.
The tail is planned on the rows' sizes from the same (seed, epoch) stream: head ops draw no random numbers, so
the tail draws the numbers the whole chain drew (AlexNet: the same crop offsets and flips).

Layout (`<cache dir>/<folder>-<split>-<hash>/<key>.*`): `.filled` one byte per row (set after its pixels are
written), `.json` what it holds, and the rows in one of two formats (`data_cache_format`):
- raw (`.u8`): all rows back to back as uint8 H x W x 3; offsets and shapes follow from the files' header sizes,
  so the file is allocated whole (posix_fallocate: a full disk fails at creation rather than as SIGBUS later) and
  rows are filled in any order. Reading a row decodes nothing.
- JPEG (`.jpegs` and `.index`, each row's offset and length): every head re-encoded at quality 90, appended as it
  is filled; FFCV's answer where raw rows do not fit (ImageNet at 256 px: ~250 GB raw, ~22 GB as JPEGs). Reading
  a row decodes its small JPEG; the first pass hands on the decoded JPEG too, so every epoch sees the same pixels.
"auto" takes raw rows where they fit in `data_cache_max_disk_fraction` of the free disk, else JPEG rows where
their estimate (a tenth of raw) fits, and says which. The key hashes the format, the head's op string, Pillow's
version, the host's resizer (`folder.resizer_version`) and every file's (path, size, modification time): a
changed, added or removed file makes another key, and the stale files are deleted when the new ones are made.

The first epoch (or `python -m jaxcnn.data.pack`) fills the rows its batches read; later epochs and runs read
them (the page cache serves repeated reads). A cache that cannot be made (read-only place, no space) costs a
warning and the uncached path; a write that fails later (a disk filling under JPEG rows) costs a warning, and
the rows not yet stored are decoded from their files each epoch.
"""

import copy
import dataclasses
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import pathlib
import shutil
import threading
import time
import weakref

import numpy as np
import PIL
from absl import logging
from PIL import Image

from jaxcnn.data import augment, folder

VERSION = 3  # 3: the row format keyed; 2: heads decoded at full scale (1: at a reduced DCT scale, shrinking 2x+)
ENV = "JAXCNN_CACHE_DIR"
FORMATS = ("auto", "raw", "jpeg")
JPEG_QUALITY = 90  # FFCV's for ImageNet
JPEG_ESTIMATE = 0.1  # JPEG rows' bytes per raw byte assumed when choosing (FFCV's ImageNet at q90: 22 of 250 GB)
_HEAD_OPS = (augment.Resize, augment.ResizeShort, augment.CenterCrop)
# Raw rows are written 8 KB a call: a whole 256x256 row in one pwrite lets the kernel fill it with large page-cache
# folios (up to 128 KB), and on a 2-core VM (Linux 6.18, virtio balloon) those cost 0.5-1.2 ms a row where they
# had not been used lately, against 0.1-0.15 ms in 8 KB pieces; the first pass's host share went from 672-1,521
# to 1,370-1,765 images/s (AlexNet, 2,000 JPEGs, one process a run, alternating). Where pages cost nothing to get
# (rewriting rows already in the page cache) the 24 calls cost 0.057 against 0.038 ms a row.
WRITE_PIECE = 8192


class Unavailable(Exception):
  """The cache cannot be used (the message says why); the caller reads the files instead."""


def directory(setting: str) -> pathlib.Path | None:
  """The data cache's root for config.data_cache: "auto" -> $JAXCNN_CACHE_DIR/data, else
  $XDG_CACHE_HOME/jaxcnn/data (~/.cache/jaxcnn/data); "" or "off" (or an empty $JAXCNN_CACHE_DIR) -> None; else
  that path."""
  setting = str(setting).strip()
  if setting.lower() in ("", "off", "false", "none"):
    return None
  if setting != "auto":
    return pathlib.Path(setting).expanduser()
  env = os.environ.get(ENV)
  if env is not None:
    return pathlib.Path(env).expanduser() / "data" if env.strip() else None
  return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache", "jaxcnn", "data")


@dataclasses.dataclass
class Head:
  """The deterministic head of a chain: `ops` (exact ops) or `max_short` (downscale-only), and the tail."""

  spec: str
  ops: list
  max_short: int | None
  tail: augment.Chain

  @property
  def fixed(self) -> tuple | None:
    hw = (None, None)
    for op in self.ops:
      hw = op.static_size(hw)
    return None if None in hw or self.max_short else hw

  def layout(self, src_h, src_w) -> tuple[np.ndarray, np.ndarray]:
    """(windows int32 [N, 4] in source pixels, row sizes int32 [N, 2]) for sources of sizes src_h, src_w."""
    src_h, src_w = np.asarray(src_h, np.int64), np.asarray(src_w, np.int64)
    if self.max_short:
      scale = np.minimum(1.0, self.max_short / np.minimum(src_h, src_w))
      out = np.stack([np.round(src_h * scale), np.round(src_w * scale)], -1)
      windows = np.stack([np.zeros_like(src_h), np.zeros_like(src_w), src_h, src_w], -1)
      return windows.astype(np.int32), out.astype(np.int32)
    views = augment.Views.whole(src_h, src_w)
    for op in self.ops:
      views = op.views(views, None)
    return views.windows()[:, 0], np.stack([views.out_h[:, 0], views.out_w[:, 0]], -1).astype(np.int32)


def head_of(chain: augment.Chain) -> Head:
  ops, texts = chain.ops, chain.spec.split("|") if chain.spec else []
  k = 0
  while k < len(ops) and type(ops[k]) in _HEAD_OPS:
    k += 1
  max_short = None
  if k == 0 and ops and isinstance(ops[0], augment.RandomResizeShort):
    max_short = int(ops[0].high)
  elif k == 0 and ops and isinstance(ops[0], augment.RandomSizedCrop):
    max_short = math.ceil(ops[0].size / math.sqrt(ops[0].area[0]))
  tail = copy.copy(chain)
  tail.ops, tail.spec = ops[k:], "|".join(texts[k:])
  spec = "|".join(texts[:k]) if k else (f"max_short({max_short})" if max_short else "")
  return Head(spec, ops[:k], max_short, tail)


def _stat(path: str) -> tuple:
  st = os.stat(path)
  return (path, st.st_size, st.st_mtime_ns)


def files_digest(paths) -> str:
  """A hash of every file's (path, size, mtime_ns), read on 16 threads: what a key says of the files, computed once
  per split (ImageNet's 1.28M files take seconds) whichever row formats are keyed from it."""
  import concurrent.futures

  with concurrent.futures.ThreadPoolExecutor(16) as pool:
    stats = list(pool.map(_stat, list(paths), chunksize=256))
  return hashlib.sha256(json.dumps(stats).encode()).hexdigest()


def key_of(files: str, head_spec: str, row_format: str) -> str:
  """The rows' key: `files` (`files_digest`), the head, the format and the decoding and resizing libraries."""
  fields = {"version": VERSION, "format": row_format, "head": head_spec, "pillow": PIL.__version__}
  text = json.dumps(fields | {"resizer": folder.resizer_version(), "files": files})
  return hashlib.sha256(text.encode()).hexdigest()[:24]


def _raw_bytes(shapes: np.ndarray) -> np.ndarray:
  """Bytes of each uint8 H x W x 3 row of `shapes` [N, 2]."""
  return shapes[:, 0].astype(np.int64) * shapes[:, 1] * 3


def head_row(path: str, window, out_hw: tuple) -> np.ndarray:
  """uint8 [h, w, 3]: the file's head window resized to out_hw, cut as the uncached loader cuts its views.

  Decoded at full scale, not at a reduced DCT scale (Pillow's draft, VERSION 1 for windows at least twice the
  output): against the uncached path, smooth 150-380 px JPEGs headed to 37 px were 6-14 units apart on average
  (99th percentile 29-54) at 1/4 and 1/8 scale, and up to 14 at the 99th percentile at 1/2, over the tolerance
  tests/test_data_cache.py states (mean 3, 99th percentile 12); full-scale heads stay at 1.2-1.9 (5-7)."""
  return folder.cut_file(path, np.array([[int(v) for v in window]]), out_hw)[0]


class RawRows:
  """Rows back to back as uint8 H x W x 3 at offsets the rows' sizes fix."""

  name, suffixes = "raw", (".u8",)

  def __init__(self, base: pathlib.Path, shapes: np.ndarray):
    self.path, self.shapes = base.with_suffix(".u8"), shapes
    self.offsets = np.concatenate([[0], np.cumsum(_raw_bytes(shapes))])
    self.nbytes = int(self.offsets[-1])
    self.data, self._writer = None, None

  def estimate(self) -> int:
    return self.nbytes

  def describe(self) -> str:
    return "raw"

  def create(self, suffix: str) -> list[pathlib.Path]:
    """Writes the empty rows beside their final names (+suffix); returns the files made, in order."""
    tmp = self.path.with_name(self.path.name + suffix)
    with open(tmp, "wb") as f:
      try:
        os.posix_fallocate(f.fileno(), 0, max(self.nbytes, 1))  # a full disk fails now, not as SIGBUS later
      except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
          raise
        f.truncate(max(self.nbytes, 1))
    return [tmp]

  def open(self, writable: bool) -> None:
    self.data = np.memmap(self.path, np.uint8, "r+" if writable else "r", shape=(max(self.nbytes, 1),))
    self._writer = os.open(self.path, os.O_RDWR) if writable else None

  def read(self, i: int) -> np.ndarray:
    h, w = self.shapes[i]
    return self.data[self.offsets[i] : self.offsets[i + 1]].reshape(h, w, 3)

  def write(self, i: int, pixels: np.ndarray) -> np.ndarray:
    """Stores row i with pwrite into the page cache the memory map reads (an assignment through the map faults
    every page of a fresh file in first: about twice the time), in WRITE_PIECE pieces."""
    _pwrite_all(self._writer, np.ascontiguousarray(pixels), int(self.offsets[i]), self.path, WRITE_PIECE)
    return pixels

  def flush(self) -> None:
    self.data.flush()

  def close(self) -> None:
    if self._writer is not None:
      os.close(self._writer)
      self._writer = None


class JpegRows:
  """Rows re-encoded as JPEG (quality JPEG_QUALITY), appended as filled; `.index` holds each row's (offset, length).

  Appends from threads and processes (the pack command's, a multi-process run's) take a thread lock and a POSIX
  record lock around reading the file's end and writing there: a row's bytes are never interleaved with another's."""

  name, suffixes = "jpeg", (".jpegs", ".index")

  def __init__(self, base: pathlib.Path, shapes: np.ndarray):
    self.path, self.index_path, self.shapes = base.with_suffix(".jpegs"), base.with_suffix(".index"), shapes
    self.index, self._fd, self._lock = None, None, threading.Lock()

  def estimate(self) -> int:
    return int(JPEG_ESTIMATE * np.sum(_raw_bytes(self.shapes)))

  def describe(self) -> str:
    return f"JPEG q{JPEG_QUALITY}"

  def create(self, suffix: str) -> list[pathlib.Path]:
    data_tmp, index_tmp = (p.with_name(p.name + suffix) for p in (self.path, self.index_path))
    data_tmp.write_bytes(b"")
    with open(index_tmp, "wb") as f:
      f.truncate(len(self.shapes) * 16)
    return [data_tmp, index_tmp]

  def open(self, writable: bool) -> None:
    self.index = np.memmap(self.index_path, np.int64, "r+" if writable else "r", shape=(len(self.shapes), 2))
    self._fd = os.open(self.path, os.O_RDWR if writable else os.O_RDONLY)

  def read(self, i: int) -> np.ndarray:
    offset, length = (int(v) for v in self.index[i])
    return folder.decode_rgb(os.pread(self._fd, length, offset))

  def write(self, i: int, pixels: np.ndarray) -> np.ndarray:
    """Stores row i; returns the pixels its JPEG decodes to (what every later read of the row gives)."""
    encoded = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(encoded, "JPEG", quality=JPEG_QUALITY)
    encoded = encoded.getvalue()
    with self._lock:
      fcntl.lockf(self._fd, fcntl.LOCK_EX)
      try:
        offset = os.fstat(self._fd).st_size
        _pwrite_all(self._fd, encoded, offset, self.path)
      finally:
        fcntl.lockf(self._fd, fcntl.LOCK_UN)
    self.index[i] = (offset, len(encoded))
    return folder.decode_rgb(encoded)

  def flush(self) -> None:
    self.index.flush()

  def close(self) -> None:
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None


def _pwrite_all(fd: int, data, offset: int, path: pathlib.Path, piece: int = 1 << 62) -> None:
  """Writes all of `data` at `offset`, at most `piece` bytes a call; a short write (a disk filling up) is
  continued, so that the kernel's own error (ENOSPC, EDQUOT, ...) is the one raised."""
  view, done = memoryview(data).cast("B"), 0
  while done < len(view):
    written = os.pwrite(fd, view[done : done + piece], offset + done)
    if written == 0:
      raise OSError(errno.EIO, f"no byte of {len(view) - done} written at {offset + done}", str(path))
    done += written


class RowCache:
  """The rows of one split under one head: `get(i)` (a stored row, or the file decoded and its head stored),
  `filled[i]`, `fill(i)`; `store` holds them (RawRows or JpegRows)."""

  def __init__(
    self,
    root: pathlib.Path,
    split,
    head: Head,
    max_disk_fraction: float = 0.5,
    name: str = "train",
    row_format: str = "auto",
  ):
    if row_format not in FORMATS:
      raise ValueError(f"data_cache_format must be one of {', '.join(FORMATS)}, got {row_format!r}")
    self.split, self.head, self.paths, self.name = split, head, split.paths, name
    self.windows, self.shapes = head.layout(split.sizes[:, 0], split.sizes[:, 1])
    self.decodes, self.store_error, self._store_lock = 0, None, threading.Lock()
    source = pathlib.Path(os.path.commonpath([str(p) for p in (split.paths[0], split.paths[-1])]))
    place = hashlib.sha256(f"{source.resolve()}|{name}|{head.spec}".encode()).hexdigest()[:12]
    self.dir = root / f"{source.name or 'root'}-{name}-{place}"
    files = files_digest(split.paths)
    try:
      self.store, self.why = self._choose(files, row_format, max_disk_fraction)
      self.key = self.store.path.stem
      self.flags_path, self.meta_path = (self.dir / f"{self.key}{s}" for s in (".filled", ".json"))
      if not self._files_exist():
        self._create()
      writable = all(os.access(p, os.W_OK) for p in self._paths())
      self.filled = np.memmap(self.flags_path, np.uint8, "r+" if writable else "r", shape=(len(split),))
      complete = bool(self.filled.all())
      if not complete and not writable:
        raise Unavailable(f"{self.dir} is not writable and the cache is incomplete")
      self.writable = writable and not complete
      self.store.open(self.writable)
    except OSError as e:
      raise Unavailable(f"{self.dir}: {e.strerror or e}") from None
    weakref.finalize(self, self.store.close)

  def _choose(self, files: str, row_format: str, max_disk_fraction: float):
    """(rows, why that format): the rows already made in a format the setting allows, else the setting's format,
    under "auto" raw rows where they fit, else JPEG rows; Unavailable when the chosen rows would not fit."""
    raw, jpeg = (kind(self.dir / key_of(files, self.head.spec, kind.name), self.shapes) for kind in (RawRows, JpegRows))
    allowed = [rows for rows in (raw, jpeg) if row_format in ("auto", rows.name)]
    for rows in allowed:
      if self._files_exist(rows):
        return rows, ""
    self.dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(self.dir).free
    over = f"over data_cache_max_disk_fraction={max_disk_fraction:g} of the {size_text(free)} free"
    for rows in allowed:
      if rows.estimate() <= max_disk_fraction * free:
        if row_format != "auto":
          return rows, f"data_cache_format={row_format}"
        return rows, "" if rows is raw else f"raw rows would take {size_text(raw.nbytes)}, {over}"
    rows = allowed[-1]
    raise Unavailable(f"its {rows.describe()} rows would take about {size_text(rows.estimate())}, {over} at {self.dir}")

  def _paths(self, rows=None) -> list[pathlib.Path]:
    rows = rows or self.store
    base = rows.path.with_suffix("")
    return [base.with_suffix(s) for s in rows.suffixes] + [base.with_suffix(".filled")]

  def _files_exist(self, rows=None) -> bool:
    return all(p.exists() for p in self._paths(rows))

  def _create(self) -> None:
    self.dir.mkdir(parents=True, exist_ok=True)
    for stale in self.dir.iterdir():  # another key's rows: files changed since they were written
      if stale.name.split(".")[0] != self.key:
        stale.unlink(missing_ok=True)
    suffix = f".tmp{os.getpid()}"
    made = []
    try:
      made += self.store.create(suffix)
      flags_tmp = self.flags_path.with_name(self.flags_path.name + suffix)
      made.append(flags_tmp)
      flags_tmp.write_bytes(bytes(len(self.split)))
      meta = {
        "version": VERSION,
        "head": self.head.spec,
        "rows": len(self.split),
        "format": self.store.describe(),
        "fixed_size": self.head.fixed,
        "first_file": str(self.split.paths[0]),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
      }
      self.meta_path.write_text(json.dumps(meta, indent=1) + "\n")
      for tmp in made:  # the flags last: a reader finds whole files or none
        os.replace(tmp, tmp.with_name(tmp.name[: -len(suffix)]))
    finally:
      for tmp in made:
        tmp.unlink(missing_ok=True)

  def row(self, i: int) -> np.ndarray:
    return self.store.read(i)

  def fill(self, i: int) -> np.ndarray:
    """Decodes row i's file, stores its head and returns it as stored (a file that fails to decode raises)."""
    pixels = head_row(self.paths[i], self.windows[i], tuple(self.shapes[i]))
    self.decodes += 1
    if self.writable and self.store_error is None:
      try:
        pixels = self.store.write(i, pixels)
      except OSError as e:
        self._stop_storing(e)
        return pixels
      self.filled[i] = 1
    return pixels

  def _stop_storing(self, error: OSError) -> None:
    """After a failed write (a full disk): one warning; rows not yet stored are decoded from their files."""
    with self._store_lock:
      if self.store_error is None:
        self.store_error = error
        logging.warning(
          "data cache: cannot store more rows in %s (%s): rows not yet stored are decoded from their files",
          self.dir,
          error.strerror or error,
        )

  def get(self, i: int) -> np.ndarray:
    return self.row(i) if self.filled[i] else self.fill(i)

  def flush(self) -> None:
    self.store.flush()
    self.filled.flush()

  def disk_bytes(self) -> int:
    return sum(os.stat(p).st_blocks * 512 for p in self._paths() if p.exists())

  def describe(self) -> str:
    filled = int(np.count_nonzero(self.filled))
    rows = f"{'x'.join(map(str, self.head.fixed))} rows" if self.head.fixed else "rows of varying size"
    if self.store.name == "jpeg":
      rows += f" as JPEG q{JPEG_QUALITY}" + (f" ({self.why})" if self.why else "")
    state = (
      "complete: no file is decoded"
      if filled == len(self.split)
      else f"{filled:,}/{len(self.split):,} filled, the rest as batches first read them"
    )
    return (
      f"data cache ({self.name}): {self.dir} ({len(self.split):,} {rows}, "
      f"head {self.head.spec or 'the decoded source'!r}, {size_text(self.disk_bytes())} on disk; {state})"
    )


def size_text(n: int) -> str:
  for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
    if n >= scale:
      return f"{n / scale:,.1f} {unit}"
  return f"{n} bytes"


def open_cache(
  setting: str, split, chain: augment.Chain, max_disk_fraction: float = 0.5, name: str = "train", row_format="auto"
):
  """The RowCache of `split` under `chain`'s head at `directory(setting)`, or None (off, or unavailable: then a
  warning says why and the files are read as without a cache)."""
  root = directory(setting)
  if root is None or not len(split):
    return None
  try:
    return RowCache(root, split, head_of(chain), max_disk_fraction, name, row_format)
  except Unavailable as e:
    logging.warning("data cache not used, reading the image files every epoch: %s", e)
    return None
