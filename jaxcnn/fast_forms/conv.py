"""`lax.conv_general_dilated` computed on the CPU in the forms XLA:CPU runs fastest.

Each form computes the same function as XLA's convolution, values and gradients (tests/test_fast_forms.py);
they differ in how the work is laid out. The causes below were found by profiling the compiled train steps
and reading their optimised HLO; the measured effects are in BUILD_NOTES.md, "Speed on the CPU".
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

# XLA:CPU's convolution of an image with one to three channels is slow: a few dozen shifted multiply-adds
# beat it (the small CNN's and LeNet-5's first convolutions, ResNet-20's stem). Wider convolutions stay
# XLA's (LeNet-5's C3, 6 -> 16, was slower shifted).
SHIFTED_MAX_CHANNELS = 3
SHIFTED_MAX_TERMS = 1024  # kernel height x width x input channels x output channels
PATCHES_MIN_FEATURES = 16  # see _shifted_conv_bwd
NARROW_MAX_CHANNELS = 8  # see _narrow_input_conv


def conv_general_dilated(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count=1,
  precision=None,
  **kwargs,
):
  """`lax.conv_general_dilated`, for `nn.Conv(conv_general_dilated=...)`. On the CPU backend, for ungrouped,
  undilated 2-D NHWC/HWIO convolutions (every other call is XLA's convolution):

  - A kernel as large as its unpadded input (LeNet-5's C5, VGG's fc6 on 7x7 maps) is a matrix product: one
    output pixel, so the convolution is a dense layer on the flattened input, and XLA's dot and its
    gradients skip the convolution's layout transposes.
  - Stride-1 convolutions of images with few channels are shifted multiply-adds (`_shifted_conv`).
  - Other stride-1 convolutions of inputs with few channels keep XLA's forward with a written-out input
    gradient (`_narrow_input_conv`).
  - Every input passes an optimization barrier. XLA:CPU computes a convolution's weight gradient from its
    input transposed to put the batch last, and fuses that transpose with the cheap elementwise ops that
    produced the input (BatchNorm's scale and shift, ReLU, the residual additions), recomputing them in
    transposed order, where memory access is slowest; along ResNet's residual stream each transpose
    recomputed every block before it. The barrier makes the transposes read the materialised input
    instead. It lasts until fusion only with `xla_flags.KEEP_BARRIERS`; without it XLA drops the barrier
    first thing and nothing changes.
  """
  if not _plain_nhwc_conv_on_cpu(lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count, kwargs):
    return lax.conv_general_dilated(
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation,
      rhs_dilation,
      dimension_numbers,
      feature_group_count,
      precision=precision,
      **kwargs,
    )
  lhs = lax.optimization_barrier(lhs)
  kh, kw, cin, cout = rhs.shape
  pads = lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), window_strides, padding) if isinstance(padding, str) else padding
  pads = tuple(map(tuple, pads))
  if (kh, kw) == lhs.shape[1:3] and not any(map(any, pads)):
    flat = lax.dot_general(
      lhs.reshape(lhs.shape[0], -1), rhs.reshape(-1, cout), (((1,), (0,)), ((), ())), precision=precision
    )
    return flat.reshape(lhs.shape[0], 1, 1, cout)
  if tuple(window_strides) == (1, 1) and cin <= NARROW_MAX_CHANNELS:
    if cin <= SHIFTED_MAX_CHANNELS and kh * kw * cin * cout <= SHIFTED_MAX_TERMS:
      return _shifted_conv(pads, lhs, rhs)
    return _narrow_input_conv(pads, lhs, rhs)
  return lax.conv_general_dilated(
    lhs, rhs, window_strides, pads, dimension_numbers=dimension_numbers, precision=precision
  )


def _plain_nhwc_conv_on_cpu(
  lhs, rhs, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count, kwargs
) -> bool:
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
  out = sum(
    padded[:, i : i + height, j : j + width, c : c + 1] * weights[i, j, c]
    for i in range(kh)
    for j in range(kw)
    for c in range(cin)
  )
  return out.astype(jnp.result_type(x, w))


def _shifted_conv_fwd(pads, x, w):
  return _shifted_conv(pads, x, w), (x, w)


def _shifted_conv_bwd(pads, residuals, grad):
  """The input gradient is XLA's (images need none: it is then dropped as dead code), and so is the weight
  gradient of convolutions with fewer than PATCHES_MIN_FEATURES outputs. Wider ones take the weight gradient
  as one matrix product of the few-channel input's patches with the output gradient in its natural layout:
  XLA's form transposes the output gradient to put the batch last and runs a convolution with an
  image-sized window (the small CNN's first layer, 32 outputs). For LeNet-5's C1 (6 outputs) the 25
  materialised patches cost more than XLA's transpose of its narrow gradient."""
  x, w = residuals
  kh, kw, cin, cout = w.shape
  if cout < PATCHES_MIN_FEATURES:
    return jax.vjp(functools.partial(_xla_conv, pads), x, w)[1](grad)
  input_grad = jax.vjp(lambda x: _xla_conv(pads, x, w), x)[1](grad)[0]
  padded = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  height, width = grad.shape[1:3]
  patches = jnp.stack([padded[:, i : i + height, j : j + width] for i in range(kh) for j in range(kw)])
  weight_grad = lax.dot_general(
    patches.reshape(kh * kw, -1, cin),
    grad.reshape(-1, cout),
    (((1,), (0,)), ((), ())),
    preferred_element_type=jnp.float32,
  )
  return input_grad, weight_grad.reshape(w.shape).astype(w.dtype)


_shifted_conv.defvjp(_shifted_conv_fwd, _shifted_conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _narrow_input_conv(pads, x, w):
  """Stride-1 NHWC/HWIO convolution of an input with few channels (LeNet-5's C3: 6), XLA's forward. XLA runs
  its input gradient as a convolution with that few output channels, slowly (PyTorch's is several times
  faster); the backward below takes it as one matrix product of the output gradient with the kernel, giving
  each output pixel's contribution to its kh x kw window, added into place by plain shifts."""
  return _xla_conv(pads, x, w)


def _narrow_input_conv_fwd(pads, x, w):
  return _xla_conv(pads, x, w), (x, w)


def _narrow_input_conv_bwd(pads, residuals, grad):
  x, w = residuals
  kh, kw, cin, cout = w.shape
  n, rows, cols, _ = grad.shape
  weight_grad = jax.vjp(lambda w: _xla_conv(pads, x, w), w)[1](grad)[0]
  spread = lax.dot_general(
    grad.reshape(-1, cout), w.reshape(-1, cout), (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32
  ).reshape(n, rows, cols, kh, kw, cin)
  padded_grad = sum(
    jnp.pad(spread[:, :, :, i, j], ((0, 0), (i, kh - 1 - i), (j, kw - 1 - j), (0, 0)))
    for i in range(kh)
    for j in range(kw)
  )
  (top, _), (left, _) = pads
  input_grad = padded_grad[:, top : top + x.shape[1], left : left + x.shape[2]]
  return input_grad.astype(x.dtype), weight_grad


_narrow_input_conv.defvjp(_narrow_input_conv_fwd, _narrow_input_conv_bwd)
