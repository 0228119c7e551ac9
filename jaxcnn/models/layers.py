"""Layers the papers use that Flax does not ship, and conventions shared by the model families.

Conv, max_pool, avg_pool and LocalResponseNorm are the plain layers (Flax's, and the LRN formula with
automatic differentiation); `jaxcnn.fast_forms.enable()` swaps in faster forms of them (`use_fast_forms`).
"""

import contextlib
import contextvars
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Images with a side below this many pixels are "small" (MNIST, CIFAR): a family's `small_input=None` picks
# its small-input stem for them, because the ImageNet stems downsample 28- or 32-pixel images to nothing.
SMALL_INPUT_BELOW = 64


def use_small_stem(small_input: bool | None, images: jnp.ndarray) -> bool:
  """Resolves a family's `small_input` option; None decides by the (static) shorter side of the images."""
  return min(images.shape[1:3]) < SMALL_INPUT_BELOW if small_input is None else small_input


# A model's smallest input (its `smallest_input()`, checked by `check_input_size` before the first layer) follows
# from the layers that shrink the map: strided convolutions and pools, and windows without padding. Each of
# them needs a whole window (and at least a stride) of pixels, and the last must leave one. Below that a 'VALID'
# layer's output is empty (a mean over it is NaN, a flatten feeds a dense layer nothing), and every window of a
# padded one reaches into the padding: it pools fewer pixels than its window, down to a single one.
Shrink = tuple[int, int, str | int]  # (window, stride, padding): "VALID", "SAME", or pixels on each side


def smallest_side(shrinks: Sequence[Shrink], padded_to: int = 0) -> int:
  """The smallest image side on which the layers `shrinks`, applied in order, satisfy the rule above; an image
  first centred in a `padded_to` field (LeNet-5's 32, AlexNet's 227) needs only what the field does not give."""
  side = 1
  for window, stride, padding in reversed(shrinks):
    # The output of n pixels is floor((n + 2 * padding - window) / stride) + 1 ('SAME': ceil(n / stride)).
    reach = 1 if padding == "SAME" else window - 2 * (0 if padding == "VALID" else padding)
    side = max(window, stride, (side - 1) * stride + reach)
  return 1 if side <= padded_to else side


def stem_smallest_side(small_input: bool | None, small: int, imagenet: int) -> int:
  """The smallest input of a family with a small-input stem (smallest `small`) and an ImageNet one (`imagenet`).
  With `small_input` None it is the small stem's: the ImageNet stem takes over at SMALL_INPUT_BELOW pixels,
  which it takes (`imagenet` is at most SMALL_INPUT_BELOW in every family, tests/test_model_sizes.py)."""
  if small_input is None:
    return small
  return small if small_input else imagenet


def pad_to(images: jnp.ndarray, size: int) -> jnp.ndarray:
  """Centres NHWC images smaller than size x size in a zero field of that size."""
  height, width = images.shape[1:3]
  pad_h, pad_w = max(size - height, 0), max(size - width, 0)
  if not (pad_h or pad_w):
    return images
  return jnp.pad(images, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))


def check_input_size(model: nn.Module, images: jnp.ndarray) -> None:
  """A one-line ValueError naming `model` (its registry name, which `create` gives it) when `images` have a side
  below its `smallest_input()`."""
  height, width = images.shape[1:3]
  smallest = model.smallest_input()
  if min(height, width) < smallest:
    raise ValueError(
      f"{model.name or type(model).__name__} needs inputs of at least {smallest}x{smallest} px; got {height}x{width}"
    )


# Weight initialisations a family offers through its `initializer` option. "normal" is the N(0, 0.01^2)
# of AlexNet (Section 5) and VGG (Section 3.1); "glorot" the Glorot & Bengio uniform VGG's Section 3.1
# names for training deep nets from scratch; "he" He et al.'s fan-in normal for ReLU stacks. AlexNet's
# paper initialisation does not train its small-input stem on Fashion-MNIST: at lr 0.01 the loss went
# 3.1 -> 20.9 in five steps and then sat at ln(10) with dead ReLUs; "he" with zero biases trained.
KERNEL_INITS = {
  "normal": nn.initializers.normal(0.01),
  "glorot": nn.initializers.glorot_uniform(),
  "he": nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
}


def kernel_init(name: str) -> nn.initializers.Initializer:
  if name not in KERNEL_INITS:
    raise ValueError(f"initializer must be one of {sorted(KERNEL_INITS)}, got {name!r}")
  return KERNEL_INITS[name]


# Faster forms of the layers below, by name, installed by `jaxcnn.fast_forms.enable()` (timm's named switch,
# `set_fused_attn`, for Flax). Each computes its plain layer's function (tests/test_fast_forms.py) with the
# plain layer's arguments; they are looked up when a model is traced. Empty: every layer is the plain one.
FAST_FORM_NAMES = ("conv_general_dilated", "max_pool", "avg_pool", "local_response_norm")
_FAST_FORMS: dict[str, Callable] = {}


def use_fast_forms(forms: dict[str, Callable]) -> None:
  """Makes Conv, max_pool, avg_pool and LocalResponseNorm compute with `forms` (name -> function) from the
  next trace on; an empty dict restores the plain layers. Functions jit-compiled before keep the forms they
  were traced with."""
  unknown = sorted(set(forms) - set(FAST_FORM_NAMES))
  if unknown:
    raise ValueError(f"unknown layer form(s) {unknown}; known: {list(FAST_FORM_NAMES)}")
  _FAST_FORMS.clear()
  _FAST_FORMS.update(forms)


def fast_forms_in_use() -> dict[str, str]:
  """{layer name: the module.function computing it} of the forms installed (empty: the plain layers)."""
  return {name: f"{form.__module__}.{form.__qualname__}" for name, form in sorted(_FAST_FORMS.items())}


def Conv(features: int, kernel_size, **options) -> nn.Conv:
  """nn.Conv, computed by the installed fast convolution if there is one; the zoo's models build their
  convolutions from it."""
  return nn.Conv(features, kernel_size, conv_general_dilated=_FAST_FORMS.get("conv_general_dilated"), **options)


# The named device axis a data-parallel train step binds (jaxcnn.parallel.AXIS); None outside one, so a
# model applied on its own (tests, notebooks) normalises over its local batch.
_BATCH_NORM_AXIS: contextvars.ContextVar[str | None] = contextvars.ContextVar("batch_norm_axis", default=None)


@contextlib.contextmanager
def cross_replica_batch_norm(axis_name: str):
  """While tracing inside, training-mode BatchNorm averages its statistics over `axis_name`, so the
  statistics are those of the global batch, whatever the device count."""
  token = _BATCH_NORM_AXIS.set(axis_name)
  try:
    yield
  finally:
    _BATCH_NORM_AXIS.reset(token)


def batch_norm(train: bool, epsilon: float = 1e-5, name: str | None = None) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.1 there is 0.9 here), so torchvision weights carry over."""
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=0.9,
    epsilon=epsilon,
    name=name,
    axis_name=_BATCH_NORM_AXIS.get() if train else None,
  )


def max_pool(x: jnp.ndarray, window: int, stride: int, padding="VALID") -> jnp.ndarray:
  """Max-pooling over NHWC with window x window windows and stride x stride strides."""
  if "max_pool" in _FAST_FORMS:
    return _FAST_FORMS["max_pool"](x, window, stride, padding)
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding=padding)


def adaptive_avg_pool(x: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
  """PyTorch's AdaptiveAvgPool2d over NHWC: output row i averages input rows floor(i * n / size) to
  ceil((i + 1) * n / size) - 1 (the same for columns), so a map smaller than `size` is stretched, each pixel
  repeated once or twice. Axes already of their size are left alone."""
  for axis, out in zip((1, 2), size):
    n = x.shape[axis]
    if n == out:
      continue
    weights = np.zeros((out, n), np.float32)
    for i in range(out):
      start, end = i * n // out, -(-(i + 1) * n // out)
      weights[i, start:end] = 1.0 / (end - start)
    x = jnp.moveaxis(jnp.tensordot(jnp.asarray(weights, x.dtype), x, axes=(1, axis)), 0, axis)
  return x


def avg_pool(x: jnp.ndarray, window: int) -> jnp.ndarray:
  """Average pooling over NHWC with non-overlapping window x window tiles ('VALID')."""
  if "avg_pool" in _FAST_FORMS:
    return _FAST_FORMS["avg_pool"](x, window)
  return nn.avg_pool(x, (window, window), strides=(window, window))


class LocalResponseNorm(nn.Module):
  """Local response normalisation across channels, AlexNet paper Section 3.3:

      b[c] = a[c] / (k + alpha * sum(a[c']^2 for c' in [c - n//2, c + n//2], clipped to the channels))^beta

  The defaults are the paper's k=2, n=5, alpha=1e-4, beta=0.75. `alpha` multiplies the plain sum; it is
  NOT divided by n. The same function in other frameworks:
    TensorFlow  tf.nn.local_response_normalization(depth_radius=2, bias=2, alpha=1e-4, beta=0.75) (no /n)
    PyTorch     nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2)   (divides alpha by size)
    Caffe       LRN(local_size=5, alpha=5e-4, beta=0.75, k=2)               (divides alpha by local_size)
  Caffe's bvlc_alexnet (alpha=1e-4, k unset=1) is therefore a weaker normalisation than the paper's
  (2e-5 per squared activation, k=1); to reproduce it here pass k=1, alpha=2e-5.
  """

  k: float = 2.0
  n: int = 5
  alpha: float = 1e-4
  beta: float = 0.75

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return _FAST_FORMS.get("local_response_norm", local_response_norm)(x, self.k, self.n, self.alpha, self.beta)


def local_response_norm(x: jnp.ndarray, k: float, n: int, alpha: float, beta: float) -> jnp.ndarray:
  """LocalResponseNorm's formula over the last axis (the channels)."""
  return x / (k + alpha * channel_window_sums(jnp.square(x), n // 2, (n - 1) // 2)) ** beta


def channel_window_sums(x: jnp.ndarray, before: int, after: int) -> jnp.ndarray:
  """s[c] = sum(x[c'] for c' in [c - before, c + after]), clipped to the channels (the last axis)."""
  channels = x.shape[-1]
  padded = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(before, after)])
  return sum(padded[..., i : i + channels] for i in range(before + after + 1))


class ConvBlock(nn.Module):
  """conv -> [BatchNorm] -> ReLU, with PyTorch's symmetric padding k//2, so output sizes and torchvision
  weights match. With BatchNorm the conv has no bias (BN's shift replaces it)."""

  features: int
  kernel: int
  stride: int = 1
  use_bn: bool = False
  bn_epsilon: float = 1e-5
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = Conv(
      self.features,
      (self.kernel, self.kernel),
      strides=self.stride,
      padding=self.kernel // 2,
      use_bias=not self.use_bn,
      kernel_init=self.kernel_init,
      bias_init=self.bias_init,
      name="conv",
    )(x)
    if self.use_bn:
      x = batch_norm(train, self.bn_epsilon, name="bn")(x)
    return nn.relu(x)


_FIRST_EXAMPLE: contextvars.ContextVar = contextvars.ContextVar("first_example", default=0)


@contextlib.contextmanager
def global_example_offset(offset):
  """While tracing inside, dropout takes this device's examples as those from `offset` on in the global
  batch (e.g. axis_index * per_device), so that its masks do not depend on the device count."""
  token = _FIRST_EXAMPLE.set(offset)
  try:
    yield
  finally:
    _FIRST_EXAMPLE.reset(token)


class Dropout(nn.Module):
  """Inverted dropout whose mask for each example is drawn from the `dropout` rng folded with the example's
  index in the global batch: the same masks on 1 device or many, with one key for every device."""

  rate: float
  deterministic: bool

  @nn.compact
  def __call__(self, x):
    if self.deterministic or self.rate == 0:
      return x
    key = self.make_rng("dropout")
    index = _FIRST_EXAMPLE.get() + jnp.arange(x.shape[0])
    keep = jax.vmap(lambda i: jax.random.bernoulli(jax.random.fold_in(key, i), 1.0 - self.rate, x.shape[1:]))(index)
    return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros_like(x))


def dropout(rate: float, train: bool) -> Dropout:
  """Dropout that is active only in training (it then needs the `dropout` rng)."""
  return Dropout(rate, deterministic=not train)
