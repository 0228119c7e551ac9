"""`dataset=image_folder`: a folder of images, one sub-folder per class (Kaggle cats-and-dogs, ImageNet's
train/ layout).

Splits are sub-folders `train`, `val` or `validation`, and `test`, each holding the class folders; a
folder whose sub-folders are the classes themselves is all training data. JPEG, PNG and BMP files in any
letter case count (any size, any mode: the pipeline makes them RGB); other files are ignored. Every file's
header is read once here (size and format), so unreadable files are found before training starts.
"""

import collections
import concurrent.futures
import io
import os
import pathlib

import numpy as np
from absl import logging
from PIL import Image, UnidentifiedImageError

try:  # OpenCV's resize, where installed: ~1/10 of the time Pillow's EXTENT transform takes for the same bilinear
  import cv2
except ImportError:
  cv2 = None

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp"}
SPLIT_FOLDERS = {"train": ("train",), "validation": ("val", "validation"), "test": ("test",)}
# Pillow formats TensorFlow's decoders read correctly in every mode except those listed here.
_TF_WRONG_MODES = {"BMP": {"P", "1", "I;16", "RGBA"}}


class BadImageError(ValueError):
  pass


def _header(path: str):
  """(height, width, needs Pillow to decode) from the file's header, or the reason it is unreadable."""
  try:
    if os.path.getsize(path) == 0:
      return "empty file"
    with Image.open(path) as image:
      width, height = image.size
      if _truncated(path, image.format):
        return "truncated file (its end-of-image marker is missing)"
      return height, width, image.mode in _TF_WRONG_MODES.get(image.format, ())
  except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
    return str(e) or type(e).__name__


def _truncated(path: str, image_format: str) -> bool:
  """Whether the file stops before its format's end: a cheap look at its last bytes, no decoding."""
  with open(path, "rb") as f:
    head = f.read(6)
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(max(size - 4096, 0))
    tail = f.read()
  if image_format == "JPEG":
    return b"\xff\xd9" not in tail  # EOI; some writers append bytes after it, hence the search
  if image_format == "PNG":
    return b"IEND" not in tail[-64:]
  if image_format == "BMP":
    return size < int.from_bytes(head[2:6], "little")  # the header's file size
  return False


def _class_files(class_dir: pathlib.Path) -> tuple[list[str], int]:
  """Image files under class_dir (recursively, sorted) and the number of other files ignored."""
  images, ignored = [], 0
  for directory, dirs, files in os.walk(class_dir):
    dirs.sort()
    for name in sorted(files):
      if os.path.splitext(name)[1].lower() in EXTENSIONS:
        images.append(os.path.join(directory, name))
      elif not name.startswith("."):
        ignored += 1
  return images, ignored


def _class_dirs(directory: pathlib.Path) -> list[pathlib.Path]:
  return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def split_dirs(root: pathlib.Path) -> dict[str, pathlib.Path]:
  """{split: folder}: the split sub-folders, or {"train": root} when root's sub-folders are classes."""
  found = {}
  for split, names in SPLIT_FOLDERS.items():
    for child in _class_dirs(root):
      if child.name.lower() in names:
        found[split] = child
  if not found:
    return {"train": root}
  if "train" not in found:
    raise FileNotFoundError(f"{root}: has split folders {sorted(p.name for p in found.values())} but no train/")
  return found


def scan(root: pathlib.Path, *, skip_bad_images: bool, threads: int = 16):
  """({split: (paths, labels, sizes [N, 2], use_pil [N])}, class names, bad files skipped)."""
  if not root.is_dir():
    raise FileNotFoundError(f"image folder {root} does not exist")
  dirs = split_dirs(root)
  class_names = [p.name for p in _class_dirs(dirs["train"])]
  if not class_names:
    raise FileNotFoundError(f"{dirs['train']}: no class sub-folders (expected one folder of images per class)")
  listed, ignored = {}, 0
  for split, directory in dirs.items():
    listed[split], stray = _list_split(directory, class_names, dirs["train"])
    ignored += stray
  if ignored:
    logging.warning("%s: ignored %d file(s) that are not JPEG, PNG or BMP images", root, ignored)
  headers = _read_headers([p for paths, _ in listed.values() for p in paths], threads)
  bad = _bad_files(root, headers, skip_bad_images)
  splits = {
    split: _kept(dirs[split], paths, labels, headers, bad, class_names) for split, (paths, labels) in listed.items()
  }
  return splits, tuple(class_names), len(bad)


def _list_split(directory: pathlib.Path, class_names: list[str], train_dir: pathlib.Path):
  """((image paths, labels) of one split folder, the number of other files ignored)."""
  unknown = sorted({p.name for p in _class_dirs(directory)} - set(class_names))
  if unknown:
    raise ValueError(f"{directory}: class folder(s) {', '.join(unknown)} are not in {train_dir}")
  paths, labels, ignored = [], [], 0
  for label, name in enumerate(class_names):
    if not (directory / name).is_dir():
      continue
    files, stray = _class_files(directory / name)
    ignored += stray
    if not files:
      raise ValueError(f"{directory / name}: empty class folder (no .jpg/.jpeg/.png/.bmp files)")
    paths += files
    labels += [label] * len(files)
  return (paths, labels), ignored


def _read_headers(paths: list[str], threads: int) -> dict:
  """{path: `_header(path)`}, read on `threads` threads."""
  with concurrent.futures.ThreadPoolExecutor(threads) as pool:
    return dict(zip(paths, pool.map(_header, paths, chunksize=64)))


def _bad_files(root: pathlib.Path, headers: dict, skip_bad_images: bool) -> dict:
  """{path: why it is unreadable}; raises naming the first unless skip_bad_images (then a warning counts them)."""
  bad = {p: h for p, h in headers.items() if isinstance(h, str)}
  if bad and not skip_bad_images:
    path, reason = next(iter(bad.items()))
    raise BadImageError(
      f"{path}: unreadable image ({reason})"
      + (f" and {len(bad) - 1} more" if len(bad) > 1 else "")
      + "; set --config.skip_bad_images=True to leave such files out"
    )
  if bad:
    logging.warning("%s: skipped %d unreadable image(s), e.g. %s (%s)", root, len(bad), *next(iter(bad.items())))
  return bad


def _kept(directory: pathlib.Path, paths, labels, headers: dict, bad: dict, class_names: list[str]):
  """(paths, labels, sizes [N, 2], use_pil [N]) of a split's readable files; raises where a class has none."""
  keep = [i for i, p in enumerate(paths) if p not in bad]
  if not keep:
    raise ValueError(f"{directory}: no readable images")
  per_class = collections.Counter(labels[i] for i in keep)
  empty = [class_names[c] for c in set(labels) if per_class[c] == 0]
  if empty:
    raise ValueError(f"{directory}: class folder(s) {', '.join(empty)} have no readable images")
  kept = [paths[i] for i in keep]
  return (
    np.array(kept, dtype=object),
    np.array([labels[i] for i in keep], np.int32),
    np.array([headers[p][:2] for p in kept], np.int32).reshape(-1, 2),
    np.array([headers[p][2] for p in kept], bool),
  )


def decode_rgb(source, draft: tuple[int, int] | None = None) -> np.ndarray:
  """uint8 [H, W, 3] of an image file (a path, or its bytes): `open_rgb`'s pixels as an array.

  With OpenCV (`resizer()`), a JPEG of one or three components is decoded by `cv2.imdecode` straight into the
  array, no EXIF rotation: the same libjpeg-turbo arithmetic as Pillow's, bitwise (tests/test_data_sources.py), a
  quarter less CPU than Pillow's decode and its copy into an array (a 400-px JPEG: 0.9 against 1.2 ms, 2-core
  VM). Anything else (CMYK JPEGs, PNG, BMP, or `draft`) is Pillow's."""
  if draft is None and resizer() == "opencv":
    data = np.frombuffer(source, np.uint8) if isinstance(source, bytes) else np.fromfile(source, np.uint8)
    if _jpeg_components(data) in (1, 3):
      pixels = cv2.imdecode(data, _CV2_RGB_FLAGS)
      if pixels is not None:
        return pixels if _CV2_RGB else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
  return np.asarray(open_rgb(source, draft))


_CV2_RGB = cv2 is not None and hasattr(cv2, "IMREAD_COLOR_RGB")  # OpenCV >= 4.10; BGR and a conversion before
_CV2_RGB_FLAGS = (
  (cv2.IMREAD_COLOR_RGB if _CV2_RGB else cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION if cv2 is not None else 0
)
_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # SOF0..SOF15


def _jpeg_components(data: np.ndarray) -> int:
  """The number of colour components a JPEG's frame header declares (0: not a JPEG, or no frame header found)."""
  if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
    return 0
  at = 2
  while at + 9 < len(data):
    if data[at] != 0xFF:
      return 0
    marker = int(data[at + 1])
    if marker in _JPEG_FRAMES:
      return int(data[at + 9])
    if marker == 0xFF:  # fill byte
      at += 1
      continue
    at += 2 + (int(data[at + 2]) << 8 | int(data[at + 3]))
  return 0


def open_rgb(source, draft: tuple[int, int] | None = None) -> Image.Image:
  """An image file (a path, or its bytes) decoded through Pillow, in any mode made 8-bit RGB as TensorFlow's
  decoders make it: 16-bit greyscale scaled to 0..255, alpha dropped (not blended), palettes, grey and CMYK
  converted by Pillow; no EXIF rotation (TensorFlow applies none either). An RGB file's decoded image is
  returned as it is: `convert("RGB")` copies it, and with decode_rgb's array that was 0.6 of the 1.1 ms
  decode_rgb took for a 400-px JPEG (2-core VM), against 0.5 ms for the decode itself.

  draft: (width, height) the caller needs at least; a YCbCr or greyscale JPEG is then decoded at the smallest
  DCT scale (1/2, 1/4, 1/8) that still covers it (Pillow's draft), so the result may be smaller than the file.
  Pillow's errors (OSError, SyntaxError, ValueError) reach the caller, which names the file as it needs to.
  """
  with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
    # Only the modes whose scaled decoding the callers were built and checked on; CMYK decodes whole.
    if draft is not None and image.format == "JPEG" and image.mode in ("RGB", "L"):
      image.draft(image.mode, tuple(draft))
    if image.mode.startswith("I"):  # Pillow's own conversion would clip 16-bit values at 255
      image = image.point(lambda v: v / 257).convert("L")
    if image.mode == "RGB":
      image.load()  # the pixels, before the file closes
      return image
    return image.convert("RGB")


def undecodable(paths, error) -> BadImageError:
  """The error for a batch that failed to decode, naming the first of its files Pillow cannot decode either."""
  for path in paths:
    try:
      decode_rgb(path)
    except (OSError, SyntaxError, ValueError) as e:
      return BadImageError(f"{path}: cannot decode image ({e})")
  first_line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
  return BadImageError(f"cannot decode one of {', '.join(map(str, paths))} ({first_line})")


RESIZERS = ("opencv", "pillow")
RESIZE_ENV = "JAXCNN_HOST_RESIZE"


def resizer() -> str:
  """Which library resizes windows (and decodes plain JPEGs: `decode_rgb`) on the host: $JAXCNN_HOST_RESIZE
  ("opencv" or "pillow"), else OpenCV where `cv2` imports (opencv-python-headless, a dependency), else Pillow.
  Both decode JPEGs to the same bits and compute the same half-pixel-centre
  bilinear resize (tf.image.resize's, no antialiasing) and agree within one 8-bit unit (OpenCV weighs in 11-bit
  fixed point); a 375-px JPEG's 256-px head took 2.4 ms of CPU with Pillow, 0.5 ms with OpenCV (2-core VM)."""
  name = os.environ.get(RESIZE_ENV, "").strip().lower() or ("opencv" if cv2 is not None else "pillow")
  if name not in RESIZERS:
    raise ValueError(f"{RESIZE_ENV} must be one of {', '.join(RESIZERS)}, got {name!r}")
  if name == "opencv" and cv2 is None:
    raise ValueError(f"{RESIZE_ENV}=opencv, but cv2 does not import: pip install opencv-python-headless")
  return name


def resizer_version() -> str:
  """The resizer and its version, e.g. "opencv 4.10.0" (decode-once rows are keyed by it)."""
  name = resizer()
  return f"opencv {cv2.__version__}" if name == "opencv" else f"pillow {Image.__version__}"


def cut_file(path: str, windows: np.ndarray, out_hw: tuple) -> np.ndarray:
  """uint8 [views, h, w, 3]: `cut_image` of an image file decoded at full scale (every host cut of a file: the
  uncached loader's views and the decode-once cache's heads)."""
  return cut_image(decode_rgb(path), windows, out_hw)


def cut_image(pixels: np.ndarray, windows: np.ndarray, out_hw: tuple) -> np.ndarray:
  """uint8 [views, h, w, 3]: each (top, left, height, width) window of RGB pixels [H, W, 3], resized to out_hw
  (`resizer()`'s bilinear; zeros outside the image). A window inside the image at the output size is a slice."""
  height, width = out_hw
  views, use_opencv = [], resizer() == "opencv"
  for top, left, window_h, window_w in windows.tolist():
    if (window_h, window_w) == (height, width):
      views.append(_window(pixels, top, left, window_h, window_w))
    elif use_opencv:
      # cv2.resize's INTER_LINEAR samples at half-pixel centres and repeats the window's edge pixels beyond it.
      view = _window(pixels, top, left, window_h, window_w)
      views.append(cv2.resize(view, (width, height), interpolation=cv2.INTER_LINEAR))
    else:
      # Bilinear samples at half-pixel centres, the window framed by one pixel whose samples near its border
      # take the border's values (as tf.image.resize and jax_ops clamp), not a blend with Pillow's fill colour.
      framed = _framed(pixels, top, left, window_h, window_w, shrinks=window_h >= height and window_w >= width)
      extent = (1, 1, 1 + window_w, 1 + window_h)
      views.append(
        np.asarray(framed.transform((width, height), Image.Transform.EXTENT, extent, Image.Resampling.BILINEAR))
      )
  return np.stack(views)


def _window(pixels: np.ndarray, top: int, left: int, window_h: int, window_w: int) -> np.ndarray:
  """pixels[top:top + window_h, left:left + window_w]: a view where the window lies inside, else a copy with zeros
  where it does not."""
  image_h, image_w = pixels.shape[:2]
  if top >= 0 and left >= 0 and top + window_h <= image_h and left + window_w <= image_w:
    return pixels[top : top + window_h, left : left + window_w]
  view = np.zeros((window_h, window_w, pixels.shape[2]), pixels.dtype)
  y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + window_h, image_h), min(left + window_w, image_w)
  if y1 > y0 and x1 > x0:
    view[y0 - top : y1 - top, x0 - left : x1 - left] = pixels[y0:y1, x0:x1]
  return view


def _framed(pixels: np.ndarray, top: int, left: int, window_h: int, window_w: int, shrinks: bool) -> Image.Image:
  """The window with a one-pixel frame of its edge pixels repeated. Where the window shrinks in both directions
  (or keeps a side), no bilinear sample gives the frame a non-zero weight (the outermost samples lie at least
  half a pixel inside the window; Pillow's Geometry.c BILINEAR is `a + (b - a) * d`, exact for d = 0): then the
  frame is whatever surrounds the window in the image, with the same transform, hence the same bits, as the
  edge-padded copy (tests/test_data_cache.py checks both ways agree)."""
  if shrinks:
    return Image.fromarray(np.ascontiguousarray(_window(pixels, top - 1, left - 1, window_h + 2, window_w + 2)))
  view = _window(pixels, top, left, window_h, window_w)
  return Image.fromarray(np.pad(view, ((1, 1), (1, 1), (0, 0)), mode="edge"))
