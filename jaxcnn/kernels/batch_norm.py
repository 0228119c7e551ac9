"""BatchNorm with its backward written out: the same function as Flax's `nn.BatchNorm` as `layers.batch_norm`
builds it (the same variables and statistics), values and gradients (tests/test_kernels.py).

Automatic differentiation of Flax's BatchNorm differentiates the statistics' formulas as written (the mean,
the mean of squares, the variance from both) and XLA:CPU keeps several of the resulting reductions and
elementwise passes over the activation. The standard closed form needs two sums per channel and one
elementwise pass, from the saved input, mean and reciprocal standard deviation:

  dx = scale * rstd * (g - mean(g) - xhat * mean(g * xhat)),   dscale = sum(g * xhat),   dbias = sum(g)

with the means over the whole batch, across devices with `axis_name` (`lax.pmean`, as the statistics). The
measured effect is in BUILD_NOTES.md, "Speed on the CPU".
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


class BatchNorm(nn.Module):
  """`nn.BatchNorm` over the last axis with scale and bias, float32 statistics and parameters, with the
  written-out backward in training mode."""

  use_running_average: bool = False
  momentum: float = 0.99
  epsilon: float = 1e-5
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x):
    features = (x.shape[-1],)
    mean = self.variable("batch_stats", "mean", lambda shape: jnp.zeros(shape, jnp.float32), features)
    var = self.variable("batch_stats", "var", lambda shape: jnp.ones(shape, jnp.float32), features)
    scale = self.param("scale", nn.initializers.ones, features, jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, features, jnp.float32)
    if self.use_running_average:
      return (x - mean.value) * (lax.rsqrt(var.value + self.epsilon) * scale) + bias
    initializing = self.is_initializing()
    y, batch_mean, batch_var = _normalize(self.epsilon, None if initializing else self.axis_name, x, scale, bias)
    if not initializing:
      mean.value = self.momentum * mean.value + (1 - self.momentum) * batch_mean
      var.value = self.momentum * var.value + (1 - self.momentum) * batch_var
    return y


def _statistics(axis_name, x):
  """Flax's: the mean and the mean of squares (averaged over `axis_name`), their difference clipped at 0."""
  axes = tuple(range(x.ndim - 1))
  mean, mean_of_squares = jnp.mean(x, axes), jnp.mean(jnp.square(x), axes)
  if axis_name is not None:
    mean, mean_of_squares = lax.pmean((mean, mean_of_squares), axis_name)
  return mean, jnp.maximum(0.0, mean_of_squares - jnp.square(mean))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _normalize(epsilon, axis_name, x, scale, bias):
  """(normalised x, batch mean, batch variance)."""
  return _normalize_fwd(epsilon, axis_name, x, scale, bias)[0]


def _normalize_fwd(epsilon, axis_name, x, scale, bias):
  x32 = x.astype(jnp.float32)
  mean, var = _statistics(axis_name, x32)
  rstd = lax.rsqrt(var + epsilon)
  return ((x32 - mean) * (rstd * scale) + bias, mean, var), (x, mean, rstd, scale)


def _normalize_bwd(epsilon, axis_name, residuals, cotangents):
  """The closed form above, plus the cotangents of the returned statistics (zero in a train step, whose loss
  does not read them): d mean / dx = 1 / count, d var / dx = 2 (x - mean) / count (where unclipped)."""
  grad, grad_mean, grad_var = cotangents
  x, mean, rstd, scale = residuals
  dtype, x = x.dtype, x.astype(jnp.float32)
  axes = tuple(range(x.ndim - 1))
  count = x.size // x.shape[-1]
  centered = x - mean
  normalized = centered * rstd
  grad_bias, grad_scale = jnp.sum(grad, axes), jnp.sum(grad * normalized, axes)
  means = (grad_bias / count, grad_scale / count, grad_mean, grad_var)
  if axis_name is not None:
    means = lax.pmean(means, axis_name)
  mean_grad, mean_grad_normalized, grad_mean, grad_var = means
  grad_x = (scale * rstd) * (grad - mean_grad - normalized * mean_grad_normalized)
  grad_x += (grad_mean + 2.0 * centered * grad_var) / count
  return grad_x.astype(dtype), grad_scale, grad_bias


_normalize.defvjp(_normalize_fwd, _normalize_bwd)
