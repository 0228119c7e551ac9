"""Layers the papers use that Flax does not ship, and conventions shared by the model families."""

import contextlib
import contextvars
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

# Images below this many pixels a side are "small" (MNIST, CIFAR): a family's `small_input=None` picks
# its small-input stem for them, because the ImageNet stems downsample 28- or 32-pixel images to nothing.
SMALL_INPUT_BELOW = 64


def use_small_stem(small_input: bool | None, images: jnp.ndarray) -> bool:
  """Resolves a family's `small_input` option; None decides by the (static) image height."""
  return images.shape[1] < SMALL_INPUT_BELOW if small_input is None else small_input


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


# On the CPU, XLA's convolution of a one- to three-channel image is slow: the small CNN's first conv
# (1 -> 32, 3x3) took 1.76 ms forward at batch 128 where 9 shifted multiply-adds take 0.38 ms (its whole
# train step: 1.68x), LeNet-5's C1 (1 -> 6, 5x5) 1.89 ms against 0.29, ResNet-20's stem (3 -> 16, 3x3)
# 3.54 ms against 0.86. Wider convolutions stay XLA's (C3, 6 -> 16: 0.55 ms against 0.88); for the
# gradients see _shifted_conv_bwd.
_SHIFTED_MAX_CHANNELS = 3
_SHIFTED_MAX_TERMS = 1024  # kernel height x width x input channels x output channels
_PATCHES_MIN_FEATURES = 16  # see _shifted_conv_bwd
_NARROW_MAX_CHANNELS = 8  # see _narrow_input_conv


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
  """`lax.conv_general_dilated` for `nn.Conv(conv_general_dilated=...)`: the same function, computed on
  the CPU in the form XLA:CPU runs fastest.

  - A kernel as large as its unpadded input (LeNet-5's C5, VGG's fc6 on 7x7 maps) is a matrix product:
    one output pixel, so the convolution is a dense layer on the flattened input, and XLA's dot and its
    gradients skip the convolution's layout transposes.
  - Stride-1 convolutions of images with few channels are shifted multiply-adds (see above).
  - Other stride-1 convolutions of inputs with few channels keep XLA's forward with a written-out input
    gradient (`_narrow_input_conv`).
  - Every input passes an optimization barrier. XLA:CPU computes a convolution's weight gradient from its
    input transposed to put the batch last, and fuses that transpose with the cheap elementwise ops that
    produced the input (BatchNorm's scale and shift, ReLU, the residual additions), recomputing them in
    transposed order, where memory access is slowest; along ResNet's residual stream each transpose
    recomputed every block before it (ResNet-20's seven stage-1 transposes: 218 of its 600 ms step). The
    barrier makes the transposes read the materialised input instead. It lasts until fusion only with
    `jaxcnn.xla_cpu`'s flags; without them XLA drops it first thing and nothing changes.
  """
  if not _plain_nhwc_conv_on_cpu(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
                                 kwargs):
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                                    feature_group_count, precision=precision, **kwargs)
  lhs = lax.optimization_barrier(lhs)
  kh, kw, cin, cout = rhs.shape
  pads = lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), window_strides, padding) if isinstance(padding, str) else padding
  pads = tuple(map(tuple, pads))
  if (kh, kw) == lhs.shape[1:3] and not any(map(any, pads)):
    flat = lax.dot_general(lhs.reshape(lhs.shape[0], -1), rhs.reshape(-1, cout), (((1,), (0,)), ((), ())),
                           precision=precision)
    return flat.reshape(lhs.shape[0], 1, 1, cout)
  if tuple(window_strides) == (1, 1) and cin <= _NARROW_MAX_CHANNELS:
    if cin <= _SHIFTED_MAX_CHANNELS and kh * kw * cin * cout <= _SHIFTED_MAX_TERMS:
      return _shifted_conv(pads, lhs, rhs)
    return _narrow_input_conv(pads, lhs, rhs)
  return lax.conv_general_dilated(lhs, rhs, window_strides, pads, dimension_numbers=dimension_numbers,
                                  precision=precision)


def _plain_nhwc_conv_on_cpu(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
                            kwargs) -> bool:
  """An ungrouped, undilated 2-D NHWC/HWIO convolution on the CPU backend."""
  if lhs.ndim != 4 or kwargs or feature_group_count != 1 or jax.default_backend() != "cpu":
    return False
  if any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ()))):
    return False
  nhwc = lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
  return lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == nhwc


def _xla_conv(pads, x, w):
  return lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _shifted_conv(pads, x, w):
  """Stride-1 NHWC/HWIO convolution as a sum of kh x kw x cin broadcast products, in float32."""
  kh, kw, cin, _ = w.shape
  padded = jnp.pad(x.astype(jnp.float32), ((0, 0), *pads, (0, 0)))
  height, width = padded.shape[1] - kh + 1, padded.shape[2] - kw + 1
  weights = w.astype(jnp.float32)
  out = sum(padded[:, i:i + height, j:j + width, c:c + 1] * weights[i, j, c]
            for i in range(kh) for j in range(kw) for c in range(cin))
  return out.astype(jnp.result_type(x, w))


def _shifted_conv_fwd(pads, x, w):
  return _shifted_conv(pads, x, w), (x, w)


def _shifted_conv_bwd(pads, residuals, grad):
  """The input gradient is XLA's (images need none: it is then dropped as dead code), and so is the weight
  gradient of convolutions with fewer than _PATCHES_MIN_FEATURES outputs. Wider ones take the weight
  gradient as one matrix product of the few-channel input's patches with the output gradient in its
  natural layout: XLA's form transposes the output gradient to put the batch last and runs a convolution
  with an image-sized window (the small CNN's first layer, 32 outputs: train step 1.5x). For LeNet-5's C1
  (6 outputs) the 25 materialised patches cost more than XLA's transpose of its narrow gradient (0.92x)."""
  x, w = residuals
  kh, kw, cin, cout = w.shape
  if cout < _PATCHES_MIN_FEATURES:
    return jax.vjp(functools.partial(_xla_conv, pads), x, w)[1](grad)
  input_grad = jax.vjp(lambda x: _xla_conv(pads, x, w), x)[1](grad)[0]
  padded = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  height, width = grad.shape[1:3]
  patches = jnp.stack([padded[:, i:i + height, j:j + width] for i in range(kh) for j in range(kw)])
  weight_grad = lax.dot_general(patches.reshape(kh * kw, -1, cin), grad.reshape(-1, cout), (((1,), (0,)), ((), ())),
                                preferred_element_type=jnp.float32)
  return input_grad, weight_grad.reshape(w.shape).astype(w.dtype)


_shifted_conv.defvjp(_shifted_conv_fwd, _shifted_conv_bwd)

@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _narrow_input_conv(pads, x, w):
  """Stride-1 NHWC/HWIO convolution of an input with few channels (LeNet-5's C3: 6), XLA's forward. XLA
  runs its input gradient as a convolution with that few output channels, slowly (C3's: 3.9 ms against
  PyTorch's 0.9); the backward below takes it as one matrix product of the output gradient with the kernel,
  giving each output pixel's contribution to its kh x kw window, added into place by plain shifts."""
  return _xla_conv(pads, x, w)


def _narrow_input_conv_fwd(pads, x, w):
  return _xla_conv(pads, x, w), (x, w)


def _narrow_input_conv_bwd(pads, residuals, grad):
  x, w = residuals
  kh, kw, cin, cout = w.shape
  n, rows, cols, _ = grad.shape
  weight_grad = jax.vjp(lambda w: _xla_conv(pads, x, w), w)[1](grad)[0]
  spread = lax.dot_general(grad.reshape(-1, cout), w.reshape(-1, cout), (((1,), (1,)), ((), ())),
                           preferred_element_type=jnp.float32).reshape(n, rows, cols, kh, kw, cin)
  padded_grad = sum(jnp.pad(spread[:, :, :, i, j], ((0, 0), (i, kh - 1 - i), (j, kw - 1 - j), (0, 0)))
                    for i in range(kh) for j in range(kw))
  (top, _), (left, _) = pads
  input_grad = padded_grad[:, top:top + x.shape[1], left:left + x.shape[2]]
  return input_grad.astype(x.dtype), weight_grad


_narrow_input_conv.defvjp(_narrow_input_conv_fwd, _narrow_input_conv_bwd)

# nn.Conv with the convolution above; the zoo's models build their convolutions from it.
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)


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
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=epsilon, name=name,
                      axis_name=_BATCH_NORM_AXIS.get() if train else None)


def max_pool(x: jnp.ndarray, window: int, stride: int, padding="VALID") -> jnp.ndarray:
  """Max-pooling over NHWC, in forms whose gradients are elementwise: XLA:CPU expands the gradient of a
  windowed max (select-and-scatter) into an argmax reduction over index arrays and a scatter, slow on the
  CPU (AlexNet's three overlapping pools took most of its step).

  - Non-overlapping windows that tile the image exactly (LeNet-5's 2x2/2, VGG's on 224 pixels, where
    'SAME' pads nothing): a reshape and a max reduction (LeNet-5: +31% train-step images/s on 2 cores).
  - Other windows on the CPU (AlexNet's and GoogLeNet's overlapping 3/2): the maximum of the window's
    strided slices of the (-inf padded) image.
  - Other windows elsewhere: `nn.max_pool` (the GPU's windowed max and its gradient are fast).
  Same forward values; the gradients differ only at ties inside a window (shared among them rather than
  given to the first), which after a ReLU are zeros whose gradient the ReLU stops anyway.
  """
  height, width = x.shape[1:3]
  if window == stride and padding in ("VALID", "SAME") and height % window == 0 and width % window == 0:
    return _tiles(x, window).max(axis=(2, 4))
  if jax.default_backend() != "cpu":
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=padding)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads((height, width), (window, window), (stride, stride), padding)
  return _strided_max_pool(window, stride, tuple(map(tuple, padding)), x)


def avg_pool(x: jnp.ndarray, window: int) -> jnp.ndarray:
  """Average pooling over NHWC with non-overlapping window x window tiles ('VALID'). Where the tiles cover
  the image exactly (the small CNN's and LeNet-5's 2x2 on 28 and 10 pixels) it is the sum of the tiles'
  window x window elements, added one by one: XLA:CPU hands a sum reduction (`nn.avg_pool`'s windowed sum
  as well as a reshape and a mean) to a YNNPACK fusion that took the preceding ReLU along and materialised
  its zero at full size (6.6 of the small CNN's 44 ms step)."""
  height, width = x.shape[1:3]
  if height % window or width % window:
    return nn.avg_pool(x, (window, window), strides=(window, window))
  tiles = _tiles(x, window)
  return sum(tiles[:, :, i, :, j] for i in range(window) for j in range(window)) / (window * window)


def _tiles(x: jnp.ndarray, window: int) -> jnp.ndarray:
  """NHWC -> N, H/window, window, W/window, window, C (height and width multiples of window)."""
  n, height, width, channels = x.shape
  return x.reshape(n, height // window, window, width // window, window, channels)


def _window_slices(padded: jnp.ndarray, window: int, stride: int):
  """(row offset, column offset, strided slice) of each of the window's positions, over a padded NHWC image."""
  rows, cols = (padded.shape[1] - window) // stride + 1, (padded.shape[2] - window) // stride + 1
  for i in range(window):
    for j in range(window):
      yield i, j, padded[:, i:i + stride * (rows - 1) + 1:stride, j:j + stride * (cols - 1) + 1:stride]


# The gradient is written out: differentiated automatically, the chain of maxima became a chain of
# selects that XLA fused into each of the nine slices' transposes, recomputing it in each.
@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _strided_max_pool(window, stride, padding, x):
  padded = jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=-jnp.inf)
  return functools.reduce(jnp.maximum, (part for _, _, part in _window_slices(padded, window, stride)))


def _strided_max_pool_fwd(window, stride, padding, x):
  out = _strided_max_pool(window, stride, padding, x)
  return out, (x, out)


def _strided_max_pool_bwd(window, stride, padding, residuals, grad):
  x, out = residuals
  padded = jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=-jnp.inf)
  hits = [(i, j, part == out) for i, j, part in _window_slices(padded, window, stride)]
  share = grad / sum(hit.astype(grad.dtype) for _, _, hit in hits)  # ties share, as jnp.max's gradient
  # Window position (i, j) = (stride * qi + ri, stride * qj + rj) sends output (r, c)'s share to padded pixel
  # (stride * (r + qi) + ri, stride * (c + qj) + rj): for each phase (ri, rj), a sum of plain shifts on the
  # output's grid; the phases then interleave by a reshape. (Placing each position's share with an interior
  # pad, as the slices' own transposes do, took 2.5x as long on the CPU.)
  n, rows, cols, channels = out.shape
  reach = (window - 1) // stride  # the largest qi
  zero = jnp.zeros((), grad.dtype)
  phases = {}
  for i, j, hit in hits:
    (qi, ri), (qj, rj) = divmod(i, stride), divmod(j, stride)
    shifted = jnp.pad(jnp.where(hit, share, zero), ((0, 0), (qi, reach - qi), (qj, reach - qj), (0, 0)))
    phases[ri, rj] = phases[ri, rj] + shifted if (ri, rj) in phases else shifted
  empty = jnp.zeros((n, rows + reach, cols + reach, channels), grad.dtype)
  placed = jnp.stack([jnp.stack([phases.get((ri, rj), empty) for rj in range(stride)], axis=3)
                      for ri in range(stride)], axis=2).reshape(n, (rows + reach) * stride, (cols + reach) * stride,
                                                               channels)
  height, width = padded.shape[1:3]
  placed = jnp.pad(placed, ((0, 0), (0, max(0, height - placed.shape[1])), (0, max(0, width - placed.shape[2])),
                            (0, 0)))
  (top, _), (left, _) = padding
  return (placed[:, top:top + x.shape[1], left:left + x.shape[2]],)


_strided_max_pool.defvjp(_strided_max_pool_fwd, _strided_max_pool_bwd)


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
    return _local_response_norm(self.k, self.n, self.alpha, self.beta, x)


def _channel_window_sums(x: jnp.ndarray, before: int, after: int) -> jnp.ndarray:
  """s[c] = sum(x[c'] for c' in [c - before, c + after]), clipped to the channels (the last axis)."""
  channels = x.shape[-1]
  padded = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(before, after)])
  return sum(padded[..., i:i + channels] for i in range(before + after + 1))


# The gradient is written out so that the power is computed once per activation: differentiated
# automatically, XLA fused it into the window's channel slices and recomputed it for each (AlexNet's
# LRN gradients took ~0.8 s of a 2.6 s train step on 2 CPU cores).
@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _local_response_norm(k, n, alpha, beta, x):
  return _local_response_norm_fwd(k, n, alpha, beta, x)[0]


def _local_response_norm_fwd(k, n, alpha, beta, x):
  denominator = k + alpha * _channel_window_sums(jnp.square(x), n // 2, (n - 1) // 2)
  scale = denominator ** -beta
  return x * scale, (x, scale, denominator)


def _local_response_norm_bwd(k, n, alpha, beta, residuals, grad):
  # b = a d^-beta with d = k + alpha sum(a^2 over the window): db[c]/da[c'] is d[c]^-beta at c' = c, minus
  # 2 alpha beta a[c'] b[c] / d[c] for every c whose window holds c', i.e. c in [c' - (n-1)//2, c' + n//2].
  x, scale, denominator = residuals
  spread = _channel_window_sums(grad * x * scale / denominator, (n - 1) // 2, n // 2)
  return (grad * scale - 2 * alpha * beta * x * spread,)


_local_response_norm.defvjp(_local_response_norm_fwd, _local_response_norm_bwd)


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
    x = Conv(self.features, (self.kernel, self.kernel), strides=self.stride, padding=self.kernel // 2,
                use_bias=not self.use_bn, kernel_init=self.kernel_init, bias_init=self.bias_init, name="conv")(x)
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
