"""The TF-free pipeline: a NumPy host loader for in-memory datasets; the augmentation runs on the devices.

Each step gathers this process's uint8 images and their plan rows on the host (cheap copies, a quarter
of the float bytes to transfer) and one pmapped, vmapped JAX function cuts, resizes, mirrors, lights
and normalises them on every local device; the train step's pmap then takes the result where it lies.
"""

import functools
from typing import Iterator

import jax
import numpy as np

from jaxcnn.data import jax_ops


@functools.lru_cache(maxsize=8)
def _augmenter(chain, out_hw: tuple, mean: tuple, std: tuple):
  """One compiled function per chain and shape, reused across epochs."""
  return jax.pmap(jax.vmap(jax_ops.augment_fn(chain, out_hw, np.float32(mean), np.float32(std))))


def batches(split, indices, plan, mask, chain, mean, std, layout, out_hw) -> Iterator[dict]:
  """Batches of `split` for rows `indices` [steps, local_batch] with their augmentation plan rows."""
  _, local_devices, per_device = layout
  augment = _augmenter(chain, tuple(out_hw), tuple(np.float32(mean).tolist()), tuple(np.float32(std).tolist()))
  columns = plan.as_dict()

  def per_device_layout(x):
    return x.reshape(local_devices, per_device, *x.shape[1:])

  for step, rows in enumerate(indices):
    row_plan = {k: per_device_layout(v[step]) for k, v in columns.items()}
    batch = {"image": augment(per_device_layout(split.images[rows]), row_plan),
             "label": per_device_layout(split.labels[rows])}
    if mask is not None:
      batch["mask"] = per_device_layout(mask[step])
    yield batch
