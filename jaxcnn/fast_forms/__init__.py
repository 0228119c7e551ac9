"""Faster forms of the zoo's layers and the XLA:CPU flags they rely on, behind one switch.

The models are built from the plain layers of `jaxcnn.models.layers` (Flax's convolution and pools, the
LRN formula with automatic differentiation). `enable()` installs the forms below in their place, as
timm's `set_fused_attn` does for attention, and adds this jaxlib's XLA flags (`xla_flags`); the entry
points (`jaxcnn.main`, the bench's worker and time-to-accuracy mode, `jaxcnn.bench.pipeline`) call it
before JAX starts a backend.

  layer                  form                                                      applies
  conv_general_dilated   conv.py: a dot, shifted multiply-adds, a written-out        CPU
                         input gradient, an optimization barrier on each input
  max_pool               pool.py: reshape + max for exact tiles;                     every backend
                         strided slices with a written-out gradient otherwise        CPU
  avg_pool               pool.py: the sum of the tiles' elements                     every backend
  local_response_norm    lrn.py: a written-out gradient                              every backend

Each form computes its plain layer's function, values and gradients (tests/test_fast_forms.py); the max-pool's
gradient at ties inside a window is shared among them (pool.py). The forms are looked up when a model is
traced: switch before the first jit of a step.
"""

from jaxcnn import xla_flags
from jaxcnn.fast_forms import conv, lrn, pool
from jaxcnn.models import layers

FORMS = {
  "conv_general_dilated": conv.conv_general_dilated,
  "max_pool": pool.max_pool,
  "avg_pool": pool.avg_pool,
  "local_response_norm": lrn.local_response_norm,
}


def enable(add_xla_flags: bool = True) -> str:
  """Installs the fast forms and (unless `add_xla_flags` is False) adds this jaxlib's XLA flags to XLA_FLAGS,
  never over the user's own; call before JAX's first use of a device. Returns a one-line description."""
  layers.use_fast_forms(FORMS)
  flags = str(xla_flags.apply()) if add_xla_flags else "no XLA flags added"
  return f"fast forms: on ({flags})"


def disable() -> str:
  """Restores the plain layers (XLA flags already added stay: XLA read them when its backend started).
  Returns a one-line description."""
  layers.use_fast_forms({})
  return "fast forms: off (plain layers, no XLA flags added)"
