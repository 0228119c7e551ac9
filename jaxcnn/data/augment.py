"""Augmentations as named, composable ops: `"resize_short(256)|random_crop(224)|flip_lr|pca_lighting(0.1)"`.

Each op is defined once and serves both pipelines (tf.data, and the TF-free one that augments on the
device in JAX):

- its random numbers are drawn on the host with NumPy, for a whole epoch at once from (seed, epoch),
  so the two pipelines draw the same numbers and a resumed run redraws them exactly;
- a geometric op (resize, crop, pad, flip, multi-view) only moves a *view*: the window of the source
  image that becomes the output and the output's size. A chain of them collapses into one window per
  view, which a JPEG source decodes alone (`tf.image.decode_and_crop_jpeg`) and which is resized once;
- a photometric op draws per-example parameters here and applies them with array arithmetic that
  TensorFlow and jax.numpy both understand.

The backends (`tf_ops.py`, `jax_ops.py`) only cut windows out of pixels (zero outside the image),
resize them bilinearly and mirror them; all arithmetic about where is here. Pixel values stay on the
0..255 scale until the final per-channel normalisation.
"""

import ast
import dataclasses
import re

import numpy as np

# AlexNet's PCA lighting constants for ImageNet RGB in [0, 1] (fb.resnet.torch datasets/imagenet.lua):
# eigenvalues of the pixel covariance, and the eigenvectors as columns.
IMAGENET_PCA_EIGVAL = np.array([0.2175, 0.0188, 0.0045])
IMAGENET_PCA_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]])


# The crop the ImageNet papers state (224; AlexNet's model takes 227, jaxcnn centres a 224 crop in its 227 field).
PAPER_CROP = 224
# The input of He et al.'s CIFAR networks.
CIFAR_CROP = 32


def paper_crop(name: str) -> int:
  """The model input a preset's paper used: its pixel counts are scaled from there to other crop sizes."""
  return CIFAR_CROP if name == "resnet_cifar" else PAPER_CROP


def _presets(size: int) -> tuple[dict, dict]:
  """(train, eval) recipes of the papers, for crops of `size` (the model's input).

  Every pixel count is the paper's, scaled by size / 224 (the crop the papers state): at 224 the chains
  are the papers' own; at 64 (CIFAR upscaled) AlexNet's 256-pixel resize becomes 73 and the crop 64.
  """

  def scaled(pixels: int) -> int:
    return round(pixels * size / PAPER_CROP)

  train = {
    # Krizhevsky et al. 2012, Section 4.1: 256x256 centre of the short-side-256 image, random crops, flips,
    # PCA lighting.
    "alexnet": (
      f"resize_short({scaled(256)})|center_crop({scaled(256)})|random_crop({size})|flip_lr|pca_lighting(0.1)"
    ),
    # Simonyan & Zisserman 2015, Section 3.1: scale jittering S in [256, 512], crop, flip, RGB shift.
    "vgg": f"random_resize_short({scaled(256)}, {scaled(512)})|random_crop({size})|flip_lr|pca_lighting(0.1)",
    # Szegedy et al. 2014, Section 6: 8%-100% of the area, aspect 3/4-4/3, photometric distortions.
    "googlenet": f"random_sized_crop({size}, 0.08, 1.0, 0.75, 1.3333333)|flip_lr|color_jitter(0.4, 0.4, 0.4)",
    # He et al. 2015, Section 3.4: short side in [256, 480], crop, flip, AlexNet's colour augmentation.
    "resnet": f"random_resize_short({scaled(256)}, {scaled(480)})|random_crop({size})|flip_lr|pca_lighting(0.1)",
    # He et al. 2015, Section 4.2: 4 pixels of zero padding (an eighth of the 32-pixel input), random crop, flip;
    # the resize is the identity on 32x32 CIFAR and upscales it for a larger input.
    "resnet_cifar": f"resize({size})|pad({round(size / 8)})|random_crop({size})|flip_lr",
  }
  center = f"resize_short({scaled(256)})|center_crop({size})"
  ten_crop = f"resize_short({scaled(256)})|ten_crop({size})"
  evals = {
    "center": center,
    "alexnet": ten_crop,
    "ten_crop": ten_crop,
    "vgg": f"multi_crop({size}, 5, {scaled(256)}, {scaled(384)}, {scaled(512)})",
    "googlenet": center,
    "resnet": ten_crop,
    "resnet_cifar": "",
  }
  return train, evals


def preset(name: str, *, train: bool, size: int | None = None) -> str | None:
  """The op string of preset `name` for crops of `size` (None: the paper's own), or None for no such preset."""
  name = name.strip()
  train_presets, eval_presets = _presets(size or paper_crop(name))
  return (train_presets if train else eval_presets).get(name)


@dataclasses.dataclass
class Views:
  """Where each output view comes from. Every field is an array over [examples, views].

  (y, x, h, w) is the window in source pixels (it may reach outside the image: zero padding);
  (out_h, out_w) the size the window is resized to; `flip` mirrors the output left-right.
  """

  y: np.ndarray
  x: np.ndarray
  h: np.ndarray
  w: np.ndarray
  out_h: np.ndarray
  out_w: np.ndarray
  flip: np.ndarray

  @classmethod
  def whole(cls, src_h: np.ndarray, src_w: np.ndarray) -> "Views":
    h, w = np.asarray(src_h, np.float64)[:, None], np.asarray(src_w, np.float64)[:, None]
    zeros = np.zeros_like(h)
    return cls(zeros, zeros, h, w, h, w, np.zeros(h.shape, bool))

  def resized(self, out_h, out_w) -> "Views":
    return dataclasses.replace(
      self,
      out_h=np.broadcast_to(out_h, self.h.shape).astype(np.float64),
      out_w=np.broadcast_to(out_w, self.w.shape).astype(np.float64),
    )

  def crop(self, top, left, height, width) -> "Views":
    """The sub-window at (top, left) of the current output, in output pixels (negative = padding)."""
    scale_y, scale_x = self.h / self.out_h, self.w / self.out_w
    # A crop of a mirrored output is the mirrored crop of the unmirrored one.
    left = np.where(self.flip, self.out_w - left - width, left)
    height, width = np.broadcast_to(height, self.h.shape), np.broadcast_to(width, self.w.shape)
    return Views(
      self.y + top * scale_y,
      self.x + left * scale_x,
      height * scale_y,
      width * scale_x,
      height.astype(np.float64),
      width.astype(np.float64),
      self.flip,
    )

  def repeat(self, copies: int) -> "Views":
    return Views(*(np.repeat(getattr(self, f.name), copies, axis=1) for f in dataclasses.fields(self)))

  def windows(self) -> np.ndarray:
    """int32 [examples, views, 4]: (top, left, height, width) rounded to whole source pixels."""
    top, left = np.floor(self.y + 0.5), np.floor(self.x + 0.5)
    height = np.maximum(np.floor(self.y + self.h + 0.5) - top, 1)
    width = np.maximum(np.floor(self.x + self.w + 0.5) - left, 1)
    return np.stack([top, left, height, width], axis=-1).astype(np.int32)


class Op:
  """One augmentation. Geometric ops override `views`; photometric ops `draw` and `apply`."""

  geometric = True
  random = False

  def static_size(self, hw: tuple) -> tuple:
    """Output (h, w) for a source of size hw (entries None where unknown), None where data-dependent."""
    return hw

  def views(self, v: Views, rng: np.random.Generator) -> Views:
    raise NotImplementedError

  def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
    raise NotImplementedError

  def apply(self, image, params, mean_fn):
    """image: float [..., H, W, C] on the 0..255 scale; params: this example's `draw` row."""
    raise NotImplementedError


def _short_side_scale(v: Views, short):
  return short / np.minimum(v.out_h, v.out_w)


class Resize(Op):
  def __init__(self, height: int, width: int | None = None):
    self.size = (height, width or height)

  def static_size(self, hw):
    return self.size

  def views(self, v, rng):
    return v.resized(*self.size)


class ResizeShort(Op):
  """Shorter side to `size`, aspect ratio kept."""

  def __init__(self, size: int):
    self.size = size

  def static_size(self, hw):
    if None in hw:
      return (None, None)
    scale = self.size / min(hw)
    return (round(hw[0] * scale), round(hw[1] * scale))

  def views(self, v, rng):
    scale = _short_side_scale(v, self._short(rng, v))
    return v.resized(np.round(v.out_h * scale), np.round(v.out_w * scale))

  def _short(self, rng, v):
    return self.size


class RandomResizeShort(ResizeShort):
  """Scale jittering: shorter side uniform in the integers [low, high]."""

  random = True

  def __init__(self, low: int, high: int):
    super().__init__(low)
    self.high = high

  def static_size(self, hw):
    return (None, None)

  def _short(self, rng, v):
    return rng.integers(self.size, self.high + 1, size=(v.h.shape[0], 1))


def _check_fits(v: Views, height: int, width: int, op: str):
  small = (v.out_h < height) | (v.out_w < width)
  if small.any():
    i = np.argwhere(small)[0]
    raise ValueError(
      f"{op}({height}, {width}) does not fit an image of {int(v.out_h[tuple(i)])}x"
      f"{int(v.out_w[tuple(i)])} (example {i[0]}): start the chain with a resize or set "
      "--config.image_size"
    )


class CenterCrop(Op):
  def __init__(self, height: int, width: int | None = None):
    self.size = (height, width or height)

  def static_size(self, hw):
    return self.size

  def views(self, v, rng):
    _check_fits(v, *self.size, "center_crop")
    return v.crop(np.floor((v.out_h - self.size[0]) / 2), np.floor((v.out_w - self.size[1]) / 2), *self.size)


class RandomCrop(CenterCrop):
  """A crop at a uniformly drawn offset: every position inside the image is equally likely."""

  random = True

  def views(self, v, rng):
    _check_fits(v, *self.size, "random_crop")
    top = np.floor(rng.random(v.h.shape) * (v.out_h - self.size[0] + 1))
    left = np.floor(rng.random(v.h.shape) * (v.out_w - self.size[1] + 1))
    return v.crop(top, left, *self.size)


class Pad(Op):
  """Zero padding on every side (ResNet's CIFAR recipe pads 4 then crops 32)."""

  def __init__(self, pixels: int):
    self.pixels = pixels

  def static_size(self, hw):
    return tuple(None if s is None else s + 2 * self.pixels for s in hw)

  def views(self, v, rng):
    return v.crop(-self.pixels, -self.pixels, v.out_h + 2 * self.pixels, v.out_w + 2 * self.pixels)


class RandomSizedCrop(Op):
  """Inception-style crop: area fraction and aspect ratio drawn, then resized to `size` (GoogLeNet).

  Ten tries for a window that fits, then the whole image: the fallback torchvision and TF slim use.
  """

  random = True
  tries = 10

  def __init__(self, size: int, area_low=0.08, area_high=1.0, ratio_low=3 / 4, ratio_high=4 / 3):
    self.size, self.area, self.log_ratio = size, (area_low, area_high), (np.log(ratio_low), np.log(ratio_high))

  def static_size(self, hw):
    return (self.size, self.size)

  def views(self, v, rng):
    shape = (*v.h.shape, self.tries)
    area = rng.uniform(*self.area, shape) * (v.out_h * v.out_w)[..., None]
    ratio = np.exp(rng.uniform(*self.log_ratio, shape))
    height, width = np.round(np.sqrt(area / ratio)), np.round(np.sqrt(area * ratio))
    fits = (height <= v.out_h[..., None]) & (width <= v.out_w[..., None]) & (height > 0) & (width > 0)
    first = np.argmax(fits, axis=-1)[..., None]
    found = fits.any(axis=-1)
    height = np.where(found, np.take_along_axis(height, first, -1)[..., 0], v.out_h)
    width = np.where(found, np.take_along_axis(width, first, -1)[..., 0], v.out_w)
    top = np.floor(rng.random(v.h.shape) * (v.out_h - height + 1))
    left = np.floor(rng.random(v.h.shape) * (v.out_w - width + 1))
    return v.crop(top, left, height, width).resized(self.size, self.size)


class FlipLR(Op):
  random = True

  def __init__(self, probability: float = 0.5):
    self.probability = probability

  def views(self, v, rng):
    return dataclasses.replace(v, flip=v.flip ^ (rng.random(v.flip.shape) < self.probability))


class MultiCrop(Op):
  """Evaluation views: crops at given positions of each scale, and their mirror images.

  `ten_crop(s)` is AlexNet's test view set (four corners and the centre, and their flips, Section 4.1);
  `multi_crop(s, grid, *scales)` VGG's multi-crop evaluation (a grid x grid of crops at each shorter-side
  scale, and flips, Section 3.2). Dense (fully convolutional) evaluation needs the model to take a whole
  image; these views are the hook for it: `multi_crop(Q, 1, Q)` is one QxQ view per scale Q.
  """

  def __init__(self, size: int, grid: int | None = None, *scales: int):
    self.size, self.grid, self.scales = size, grid, scales or (None,)

  def static_size(self, hw):
    return (self.size, self.size)

  def num_views(self) -> int:
    positions = 5 if self.grid is None else self.grid * self.grid
    return positions * len(self.scales) * 2

  def _positions(self, room_h, room_w):
    if self.grid is None:  # centre, then the four corners
      return [(room_h // 2, room_w // 2), (0, 0), (0, room_w), (room_h, 0), (room_h, room_w)]
    steps = np.linspace(0, 1, self.grid) if self.grid > 1 else np.array([0.5])
    return [(np.floor(room_h * a), np.floor(room_w * b)) for a in steps for b in steps]

  def views(self, v, rng):
    out = []
    for scale in self.scales:
      base = v if scale is None else ResizeShort(scale).views(v, rng)
      _check_fits(base, self.size, self.size, "ten_crop" if self.grid is None else "multi_crop")
      for top, left in self._positions(base.out_h - self.size, base.out_w - self.size):
        for flip in (False, True):
          crop = base.crop(top, left, self.size, self.size)
          out.append(dataclasses.replace(crop, flip=crop.flip ^ flip))
    return Views(*(np.concatenate([getattr(o, f.name) for o in out], axis=1) for f in dataclasses.fields(Views)))


class TenCrop(MultiCrop):
  def __init__(self, size: int):
    super().__init__(size)


class PcaLighting(Op):
  """AlexNet's lighting noise: adds sum_i eigvec_i * alpha_i * eigval_i, alpha_i ~ N(0, std), to every pixel."""

  geometric = False
  random = True

  def __init__(self, std: float, source: str = "imagenet", *, stats: dict | None = None):
    self.source = source
    if source == "imagenet":
      self.eigval, self.eigvec = IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC
    elif source == "dataset":
      if not stats or "pca_eigval" not in stats:
        raise ValueError(
          "pca_lighting(std, 'dataset') needs the dataset's PCA statistics: "
          "run `python -m jaxcnn.data.stats` for this dataset first"
        )
      self.eigval, self.eigvec = np.asarray(stats["pca_eigval"]), np.asarray(stats["pca_eigvec"])
    else:
      raise ValueError(f"pca_lighting source must be 'imagenet' or 'dataset', got {source!r}")
    self.std = std

  def draw(self, rng, n):
    alpha = rng.normal(0.0, self.std, (n, 3))
    return (255.0 * (alpha * self.eigval) @ self.eigvec.T).astype(np.float32)  # RGB shift on the 0..255 scale

  def apply(self, image, params, mean_fn):
    return image + params


class ColorJitter(Op):
  """Brightness, contrast and saturation factors uniform in [1 - d, 1 + d] (the photometric distortions
  of GoogLeNet's successors as fb.resnet.torch and torchvision implement them), in that fixed order."""

  geometric = False
  random = True

  def __init__(self, brightness: float, contrast: float, saturation: float):
    self.deltas = np.array([brightness, contrast, saturation])

  def draw(self, rng, n):
    return (1.0 + rng.uniform(-1, 1, (n, 3)) * self.deltas).astype(np.float32)

  def apply(self, image, params, mean_fn):
    image = image * params[0]
    gray = image[..., 0:1] * 0.299 + image[..., 1:2] * 0.587 + image[..., 2:3] * 0.114
    image = (image - mean_fn(gray)) * params[1] + mean_fn(gray)
    gray = image[..., 0:1] * 0.299 + image[..., 1:2] * 0.587 + image[..., 2:3] * 0.114
    return (image - gray) * params[2] + gray


_OPS = {
  "resize": Resize,
  "resize_short": ResizeShort,
  "random_resize_short": RandomResizeShort,
  "center_crop": CenterCrop,
  "random_crop": RandomCrop,
  "pad": Pad,
  "random_sized_crop": RandomSizedCrop,
  "flip_lr": FlipLR,
  "ten_crop": TenCrop,
  "multi_crop": MultiCrop,
  "pca_lighting": PcaLighting,
  "color_jitter": ColorJitter,
}
_NEEDS_RGB = (PcaLighting, ColorJitter)


def _parse_op(text: str, stats: dict | None) -> Op:
  match = re.fullmatch(r"\s*([a-z_]+)\s*(?:\((.*)\))?\s*", text)
  if not match or match.group(1) not in _OPS:
    raise ValueError(f"unknown augmentation op {text.strip()!r}; known ops: {', '.join(sorted(_OPS))}")
  name, arg_text = match.groups()
  try:
    args = ast.literal_eval(f"({arg_text},)") if arg_text and arg_text.strip() else ()
  except (ValueError, SyntaxError):
    raise ValueError(f"augmentation op {text.strip()!r}: arguments must be Python literals") from None
  kwargs = {"stats": stats} if _OPS[name] is PcaLighting else {}
  try:
    return _OPS[name](*args, **kwargs)
  except TypeError as e:
    raise ValueError(f"augmentation op {text.strip()!r}: {e}") from None


@dataclasses.dataclass
class Plan:
  """Everything both backends need to produce a batch: where to cut, whether to mirror, photometric rows."""

  windows: np.ndarray  # int32 [n, views, 4]
  flips: np.ndarray  # bool [n, views]
  photometric: tuple[np.ndarray, ...]  # one float32 [n, k] array per photometric op

  def rows(self, index) -> "Plan":
    return Plan(self.windows[index], self.flips[index], tuple(p[index] for p in self.photometric))

  def as_dict(self) -> dict:
    return {
      "window": self.windows,
      "flip": self.flips,
      **{f"photometric{i}": p for i, p in enumerate(self.photometric)},
    }


class Chain:
  """A parsed op list, e.g. Chain("pad(4)|random_crop(32)|flip_lr", image_size=0).

  `spec` is a `|`-separated op string, a tuple of op strings, or a preset name (see `_presets`);
  `image_size` > 0 resizes the result to image_size x image_size when it has another size (small
  datasets fed to models with large inputs) and sets the crop size of presets.
  """

  def __init__(self, spec, *, train: bool, image_size: int = 0, stats: dict | None = None):
    if isinstance(spec, str):
      named = preset(spec, train=train, size=image_size or None)
      spec = spec if named is None else named
      texts = [t for t in spec.split("|") if t.strip()]
    else:
      texts = list(spec)
    self.spec = "|".join(t.strip() for t in texts)
    self.ops = [_parse_op(t, stats) for t in texts]
    self.image_size = image_size
    geometric = [op.geometric for op in self.ops]
    if False in geometric and True in geometric[geometric.index(False) :]:
      raise ValueError(f"augmentation {self.spec!r}: geometric ops must come before photometric ones")
    views = [op for op in self.ops if isinstance(op, MultiCrop)]
    if len(views) > 1 or (views and self.ops.index(views[0]) != geometric.count(True) - 1):
      raise ValueError(f"augmentation {self.spec!r}: at most one multi-view op, as the last geometric op")
    self.num_views = views[0].num_views() if views else None
    if not train and any(op.random for op in self.ops):
      raise ValueError(f"evaluation augmentation {self.spec!r} has random ops; evaluation must be deterministic")
    if image_size and views and views[0].size != image_size:
      raise ValueError(f"augmentation {self.spec!r}: views of {views[0].size} but image_size is {image_size}")

  @property
  def is_identity(self) -> bool:
    return not self.ops and not self.image_size

  @property
  def photometric_ops(self) -> list[Op]:
    return [op for op in self.ops if not op.geometric]

  def output_size(self, source_hw: tuple) -> tuple[int, int]:
    """The static (height, width) of the chain's output for sources of size source_hw (None = varies)."""
    hw = tuple(source_hw)
    for op in self.ops:
      if op.geometric:
        hw = op.static_size(hw)
    if self.image_size:
      return (self.image_size, self.image_size)
    if None in hw:
      raise ValueError(
        f"augmentation {self.spec!r} gives images of varying size from sources of varying size: "
        "end it with a crop or resize, or set --config.image_size"
      )
    return hw

  def check_channels(self, channels: int):
    if channels != 3 and any(isinstance(op, _NEEDS_RGB) for op in self.ops):
      raise ValueError(f"augmentation {self.spec!r} needs RGB images; these have {channels} channel(s)")

  def plan(self, rng: np.random.Generator, src_h, src_w) -> Plan:
    """Windows, flips and photometric parameters for examples with source sizes src_h, src_w ([n])."""
    src_h, src_w = np.asarray(src_h), np.asarray(src_w)
    views = Views.whole(src_h, src_w)
    for op in self.ops:
      if op.geometric:
        views = op.views(views, rng)
    if self.image_size:
      views = views.resized(self.image_size, self.image_size)
    photometric = tuple(op.draw(rng, len(src_h)) for op in self.photometric_ops)
    return Plan(views.windows(), views.flip, photometric)

  def apply_photometric(self, image, plan_row: dict, mean_fn):
    for i, op in enumerate(self.photometric_ops):
      image = op.apply(image, plan_row[f"photometric{i}"], mean_fn)
    return image
