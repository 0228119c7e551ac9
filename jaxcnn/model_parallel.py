"""AlexNet's two GPU towers as model parallelism (Krizhevsky et al. 2012, Section 3.2 and Fig. 2).

The paper split its network over two GTX 580s: each GPU holds half of every layer's kernels, and "the
GPUs communicate only in certain layers" — conv3 and the fully connected layers read both towers' maps,
conv2, conv4 and conv5 only their own. `alexnet_grouped` computes the same function on one device with
grouped convolutions; here the parameters of `alexnet_grouped` (the same tree) are sharded along each
layer's output channels over a two-device mesh with a `tower` axis, and each device runs the zoo's
AlexNet as one tower on its half (`AlexNet.tower_axis`), which gathers the towers' maps exactly where the
paper's GPUs exchanged them:

  conv1 -> LRN -> pool -> conv2 -> LRN -> pool | exchange | conv3 -> conv4 -> conv5 -> pool | exchange |
  fc6 | exchange | fc7 | exchange | fc8 (each tower computes half of every layer's outputs)

A checkpoint of either runs on the other. Dropout is not applied here: this path computes the
deterministic function (evaluation, and gradients for it), which is what shows the two equal.
"""

import functools

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcnn.models.alexnet import AlexNet

TOWER = "tower"


def tower_mesh(devices=None) -> jax.sharding.Mesh:
  """A mesh of two devices, one per tower."""
  devices = jax.devices()[:2] if devices is None else devices
  if len(devices) != 2:
    raise ValueError(f"the two-tower AlexNet needs exactly 2 devices, got {len(devices)}")
  return jax.sharding.Mesh(devices, (TOWER,))


def param_specs(params) -> dict:
  """Each kernel and bias split along its last (output) axis: one half per tower."""
  return jax.tree.map(lambda x: P(*([None] * (x.ndim - 1)), TOWER), params)


def place(params, mesh: jax.sharding.Mesh):
  """`alexnet_grouped` params with each tower's half on its own device."""
  return jax.tree.map(lambda x, spec: jax.device_put(x, NamedSharding(mesh, spec)), params, param_specs(params))


def _tower(params, images, small_input):
  """One tower's logits (its half of the classes), from its half of the params; runs on each device."""
  tower = AlexNet(
    num_classes=params["fc8"]["bias"].shape[-1],
    widths=tuple(params[f"conv{i}"]["bias"].shape[-1] for i in range(1, 6)),
    fc_width=params["fc6"]["bias"].shape[-1],
    small_input=small_input,
    tower_axis=TOWER,
  )
  return tower.apply({"params": params}, images, train=False)


def forward(params, images, mesh: jax.sharding.Mesh, small_input: bool | None = None):
  """Logits of the two-tower AlexNet; `params` as placed by `place` (or any `alexnet_grouped` params)."""
  mapped = jax.shard_map(
    functools.partial(_tower, small_input=small_input),
    mesh=mesh,
    in_specs=(param_specs(params), P()),
    out_specs=P(None, TOWER),
    check_vma=False,
  )
  return mapped(params, images)
