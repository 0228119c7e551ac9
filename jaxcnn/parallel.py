"""Data parallelism over the local devices with `jax.pmap`; the step functions reduce over AXIS."""

import flax.jax_utils
import jax

AXIS = "batch"

replicate = flax.jax_utils.replicate
unreplicate = flax.jax_utils.unreplicate


def pmap_step(step_fn, *, donate_state: bool):
  """`step_fn(state, batch)` run on every local device, each on its [per_device, ...] slice."""
  return jax.pmap(step_fn, axis_name=AXIS, donate_argnums=(0,) if donate_state else ())
