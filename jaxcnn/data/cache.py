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

Layout (`<cache dir>/<folder>-<split>-<hash>/<key>.*`): `.u8` all rows back to back (uint8 H x W x 3, offsets
and shapes follow from the files' header sizes, so the file is allocated whole and rows are filled in any
order), `.filled` one byte per row (set after its pixels are written), `.json` what it holds. The key hashes
the head's op string, Pillow's version, the host's resizer (`folder.resizer_version`) and every file's
(path, size, modification time): a changed, added or
removed file makes another key, and the stale files are deleted when the new ones are made.

The first epoch (or `python -m jaxcnn.data.pack`) fills the rows its batches read; later epochs and runs read
them (a memory map: the page cache serves repeated reads). A cache that cannot be made or written (read-only
place, no space: the file is allocated with posix_fallocate, so a full disk fails here rather than as SIGBUS
later) costs a warning and the uncached path. Rows above `data_cache_max_disk_fraction` of the free disk are
refused with a warning (re-encoded JPEGs at the head's size, FFCV's answer for ImageNet, are not written yet).
"""

import copy
import dataclasses
import errno
import hashlib
import json
import math
import os
import pathlib
import shutil
import time
import weakref

import numpy as np
import PIL
from absl import logging

from jaxcnn.data import augment, folder

VERSION = 2  # 2: heads decoded at full scale (1 decoded a JPEG shrinking 2x or more at a reduced DCT scale)
ENV = "JAXCNN_CACHE_DIR"
_HEAD_OPS = (augment.Resize, augment.ResizeShort, augment.CenterCrop)


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


def key_of(paths, head_spec: str) -> str:
  import concurrent.futures

  with concurrent.futures.ThreadPoolExecutor(16) as pool:
    stats = list(pool.map(_stat, list(paths), chunksize=256))
  text = json.dumps(
    {
      "version": VERSION,
      "head": head_spec,
      "pillow": PIL.__version__,
      "resizer": folder.resizer_version(),
      "files": stats,
    }
  )
  return hashlib.sha256(text.encode()).hexdigest()[:24]


def head_row(path: str, window, out_hw: tuple) -> np.ndarray:
  """uint8 [h, w, 3]: the file's head window resized to out_hw, as host.cut_views cuts it, from the file decoded
  at full scale.

  Not decoded at a reduced DCT scale (Pillow's draft, VERSION 1 for windows at least twice the output): against
  the uncached path, smooth 150-380 px JPEGs headed to 37 px were 6-14 units apart on average (99th percentile
  29-54) at 1/4 and 1/8 scale, and up to 14 at the 99th percentile at 1/2, over the tolerance
  tests/test_data_cache.py states (mean 3, 99th percentile 12); full-scale heads stay at 1.2-1.9 (5-7)."""
  image = folder.open_rgb(path)  # cut as Pillow decoded it: no array copy in between
  return folder.cut_image(image, np.array([[int(v) for v in window]]), out_hw)[0]


class RowCache:
  """The rows of one split under one head: `row(i)`, `filled[i]`, `fill(i)` (decode and store)."""

  def __init__(self, root: pathlib.Path, split, head: Head, max_disk_fraction: float = 0.5, name: str = "train"):
    self.split, self.head, self.paths = split, head, split.paths
    self.windows, self.shapes = head.layout(split.sizes[:, 0], split.sizes[:, 1])
    sizes = self.shapes[:, 0].astype(np.int64) * self.shapes[:, 1] * 3
    self.offsets = np.concatenate([[0], np.cumsum(sizes)])
    self.nbytes = int(self.offsets[-1])
    self.decodes = 0
    source = pathlib.Path(os.path.commonpath([str(p) for p in (split.paths[0], split.paths[-1])]))
    place = hashlib.sha256(f"{source.resolve()}|{name}|{head.spec}".encode()).hexdigest()[:12]
    self.dir = root / f"{source.name or 'root'}-{name}-{place}"
    self.key = key_of(split.paths, head.spec)
    base = self.dir / self.key
    self.data_path, self.flags_path, self.meta_path = (base.with_suffix(s) for s in (".u8", ".filled", ".json"))
    try:
      if not (self.data_path.exists() and self.flags_path.exists()):
        self._create(max_disk_fraction)
      self.filled = np.memmap(self.flags_path, np.uint8, "r+" if self._writable() else "r", shape=(len(split),))
      complete = bool(self.filled.all())
      if not complete and not self._writable():
        raise Unavailable(f"{self.dir} is not writable and the cache is incomplete")
      mode = "r" if complete or not self._writable() else "r+"
      self.data = np.memmap(self.data_path, np.uint8, mode, shape=(max(self.nbytes, 1),))
      self._writer = os.open(self.data_path, os.O_RDWR) if mode == "r+" else None
    except OSError as e:
      raise Unavailable(f"{self.dir}: {e.strerror or e}") from None
    if self._writer is not None:
      weakref.finalize(self, os.close, self._writer)

  def _writable(self) -> bool:
    return os.access(self.data_path, os.W_OK) and os.access(self.flags_path, os.W_OK)

  def _create(self, max_disk_fraction: float) -> None:
    self.dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(self.dir).free
    if self.nbytes > max_disk_fraction * free:
      raise Unavailable(
        f"its rows would take {self.nbytes / 1e9:.1f} GB, over data_cache_max_disk_fraction="
        f"{max_disk_fraction} of the {free / 1e9:.1f} GB free at {self.dir} (storing re-encoded JPEGs at the "
        "head's size instead is not implemented yet)"
      )
    for stale in self.dir.iterdir():  # another key's rows: files changed since they were written
      if stale.name.split(".")[0] != self.key:
        stale.unlink(missing_ok=True)
    suffix = f".tmp{os.getpid()}"
    data_tmp, flags_tmp = (p.with_name(p.name + suffix) for p in (self.data_path, self.flags_path))
    try:
      with open(data_tmp, "wb") as f:
        try:
          os.posix_fallocate(f.fileno(), 0, max(self.nbytes, 1))  # a full disk fails now, not as SIGBUS later
        except OSError as e:
          if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
          f.truncate(max(self.nbytes, 1))
      with open(flags_tmp, "wb") as f:
        f.write(bytes(len(self.split)))
      meta = {
        "version": VERSION,
        "head": self.head.spec,
        "rows": len(self.split),
        "bytes": self.nbytes,
        "format": "raw uint8 HxWx3",
        "fixed_size": self.head.fixed,
        "first_file": str(self.split.paths[0]),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
      }
      self.meta_path.write_text(json.dumps(meta, indent=1) + "\n")
      os.replace(data_tmp, self.data_path)
      os.replace(flags_tmp, self.flags_path)
    finally:
      for tmp in (data_tmp, flags_tmp):
        tmp.unlink(missing_ok=True)

  def row(self, i: int) -> np.ndarray:
    h, w = self.shapes[i]
    return self.data[self.offsets[i] : self.offsets[i + 1]].reshape(h, w, 3)

  def fill(self, i: int) -> np.ndarray:
    """Decodes row i's file, stores its head and returns it (a file that fails to decode raises)."""
    pixels = head_row(self.paths[i], self.windows[i], tuple(self.shapes[i]))
    self.decodes += 1
    if self._writer is not None:
      self._store(i, pixels)
      self.filled[i] = 1
    return pixels

  def _store(self, i: int, pixels: np.ndarray) -> None:
    """Writes row i's pixels with pwrite into the page cache the memory map reads: about half the time of an
    assignment through the map, which faults every page of a fresh file in first (a 256x256 row on a 2-core VM:
    0.2-0.5 against 0.9-1.2 ms in memory the VM had not used yet, 0.03 against 0.06 ms otherwise)."""
    written = os.pwrite(self._writer, np.ascontiguousarray(pixels), int(self.offsets[i]))
    if written != pixels.nbytes:
      raise OSError(errno.EIO, f"wrote {written} of row {i}'s {pixels.nbytes} bytes to {self.data_path}")

  def get(self, i: int) -> np.ndarray:
    return self.row(i) if self.filled[i] else self.fill(i)

  def disk_bytes(self) -> int:
    return sum(os.stat(p).st_blocks * 512 for p in (self.data_path, self.flags_path) if p.exists())

  def describe(self) -> str:
    filled = int(np.count_nonzero(self.filled))
    rows = f"{'x'.join(map(str, self.head.fixed))} rows" if self.head.fixed else "rows of varying size"
    state = (
      "complete: no file is decoded"
      if filled == len(self.split)
      else f"{filled:,}/{len(self.split):,} filled, the rest as batches first read them"
    )
    return (
      f"data cache: {self.dir} ({len(self.split):,} {rows}, head {self.head.spec or 'the decoded source'!r}, "
      f"{size_text(self.disk_bytes())} on disk; {state})"
    )


def size_text(n: int) -> str:
  for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
    if n >= scale:
      return f"{n / scale:,.1f} {unit}"
  return f"{n} bytes"


def open_cache(setting: str, split, chain: augment.Chain, max_disk_fraction: float = 0.5, name: str = "train"):
  """The RowCache of `split` under `chain`'s head at `directory(setting)`, or None (off, or unavailable: then a
  warning says why and the files are read as without a cache)."""
  root = directory(setting)
  if root is None or not len(split):
    return None
  try:
    return RowCache(root, split, head_of(chain), max_disk_fraction, name)
  except Unavailable as e:
    logging.warning("data cache not used, reading the image files every epoch: %s", e)
    return None
