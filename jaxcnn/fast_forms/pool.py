"""Max and average pooling over NHWC in forms whose gradients are elementwise.

XLA:CPU expands the gradient of a windowed max (select-and-scatter) into an argmax reduction over index
arrays and a scatter, slow on the CPU (AlexNet's three overlapping pools took most of its step), and hands
a windowed sum to a YNNPACK fusion that takes the preceding ReLU along and materialises its zero at full
size. The measured effects are in BUILD_NOTES.md, "Speed on the CPU".
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def max_pool(x: jnp.ndarray, window: int, stride: int, padding="VALID") -> jnp.ndarray:
  """`nn.max_pool` with square windows and strides:

  - Non-overlapping windows that tile the image exactly (LeNet-5's 2x2/2, VGG's on 224 pixels, where 'SAME'
    pads nothing): a reshape and a max reduction, on every backend.
  - Other windows on the CPU (AlexNet's and GoogLeNet's overlapping 3/2): the maximum of the window's strided
    slices of the (-inf padded) image, with a written-out gradient.
  - Other windows elsewhere: `nn.max_pool` (the GPU's windowed max and its gradient are fast).
  Same forward values; the gradients differ only at ties inside a window (shared among them, as jnp.max's
  gradient, rather than given to the first), which after a ReLU are zeros whose gradient the ReLU stops.
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
  """`nn.avg_pool` over non-overlapping window x window tiles ('VALID'). Where the tiles cover the image
  exactly (the small CNN's and LeNet-5's 2x2 on 28 and 10 pixels) it is the sum of the tiles' window x window
  elements, added one by one, on every backend: XLA:CPU gives a sum reduction (`nn.avg_pool`'s windowed sum
  as well as a reshape and a mean) to the YNNPACK fusion described above."""
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
      yield i, j, padded[:, i : i + stride * (rows - 1) + 1 : stride, j : j + stride * (cols - 1) + 1 : stride]


# The gradient is written out: differentiated automatically, the chain of maxima became a chain of selects
# that XLA fused into each of the slices' transposes, recomputing it in each.
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
  # pad, as the slices' own transposes do, was slower on the CPU.)
  n, rows, cols, channels = out.shape
  reach = (window - 1) // stride  # the largest qi
  zero = jnp.zeros((), grad.dtype)
  phases = {}
  for i, j, hit in hits:
    (qi, ri), (qj, rj) = divmod(i, stride), divmod(j, stride)
    shifted = jnp.pad(jnp.where(hit, share, zero), ((0, 0), (qi, reach - qi), (qj, reach - qj), (0, 0)))
    phases[ri, rj] = phases[ri, rj] + shifted if (ri, rj) in phases else shifted
  empty = jnp.zeros((n, rows + reach, cols + reach, channels), grad.dtype)
  placed = jnp.stack(
    [jnp.stack([phases.get((ri, rj), empty) for rj in range(stride)], axis=3) for ri in range(stride)], axis=2
  )
  placed = placed.reshape(n, (rows + reach) * stride, (cols + reach) * stride, channels)
  height, width = padded.shape[1:3]
  placed = jnp.pad(
    placed, ((0, 0), (0, max(0, height - placed.shape[1])), (0, max(0, width - placed.shape[2])), (0, 0))
  )
  (top, _), (left, _) = padding
  return (placed[:, top : top + x.shape[1], left : left + x.shape[2]],)


_strided_max_pool.defvjp(_strided_max_pool_fwd, _strided_max_pool_bwd)
