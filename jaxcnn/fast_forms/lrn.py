"""Local response normalisation (AlexNet Section 3.3) with a written-out gradient, on every backend.

Differentiated automatically, the formula's power d^-beta was fused by XLA into each of the window's channel
slices of the gradient and recomputed for each (on the CPU, AlexNet's LRN gradients took a large part of
its train step); the backward below computes it once per activation.
"""

import functools

import jax
import jax.numpy as jnp

from jaxcnn.models.layers import channel_window_sums


def local_response_norm(x: jnp.ndarray, k: float, n: int, alpha: float, beta: float) -> jnp.ndarray:
  """`jaxcnn.models.layers.local_response_norm`, the same function with the backward below."""
  return _local_response_norm(k, n, alpha, beta, x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _local_response_norm(k, n, alpha, beta, x):
  return _local_response_norm_fwd(k, n, alpha, beta, x)[0]


def _local_response_norm_fwd(k, n, alpha, beta, x):
  denominator = k + alpha * channel_window_sums(jnp.square(x), n // 2, (n - 1) // 2)
  scale = denominator**-beta
  return x * scale, (x, scale, denominator)


def _local_response_norm_bwd(k, n, alpha, beta, residuals, grad):
  # b = a d^-beta with d = k + alpha sum(a^2 over the window): db[c]/da[c'] is d[c]^-beta at c' = c, minus
  # 2 alpha beta a[c'] b[c] / d[c] for every c whose window holds c', i.e. c in [c' - (n-1)//2, c' + n//2].
  x, scale, denominator = residuals
  spread = channel_window_sums(grad * x * scale / denominator, (n - 1) // 2, n // 2)
  return (grad * scale - 2 * alpha * beta * x * spread,)


_local_response_norm.defvjp(_local_response_norm_fwd, _local_response_norm_bwd)
