"""AlexNet's two GPU towers as model parallelism (Krizhevsky et al. 2012, Section 3.2 and Fig. 2).

The paper split its network over two GTX 580s: each GPU holds half of every layer's kernels, and "the
GPUs communicate only in certain layers" — conv3 and the fully connected layers read both towers' maps,
conv2, conv4 and conv5 only their own. `alexnet_grouped` computes the same function on one device with
grouped convolutions; here each tower's weights live on their own device of a two-device mesh, and the
towers exchange activations (an all-gather over the `tower` axis) exactly where the paper's GPUs did:

  conv1 -> LRN -> pool -> conv2 -> LRN -> pool | exchange | conv3 -> conv4 -> conv5 -> pool | exchange |
  fc6 | exchange | fc7 | exchange | fc8 (each tower computes half of every layer's outputs)

The parameters are those of `alexnet_grouped` (the same tree), sharded along each layer's output
channels, so a checkpoint of either runs on the other. Dropout is not applied here: this path computes
the deterministic function (evaluation, and gradients for it), which is what shows the two equal.
"""

import functools

import flax.linen as nn
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcnn.models.alexnet import PAPER_INPUT
from jaxcnn.models.layers import LocalResponseNorm, max_pool, use_small_stem
from jaxcnn.models.lenet import pad_to

TOWER = "tower"
_CROSSING = {"conv3", "fc6", "fc7", "fc8"}  # layers that read both towers' activations


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
  """One tower's share of the network; runs once per device inside shard_map."""

  def conv(x, name, stride=1, padding=None):
    kernel, bias = params[name]["kernel"], params[name]["bias"]
    if name in _CROSSING:
      x = jax.lax.all_gather(x, TOWER, axis=-1, tiled=True)  # the paper's inter-GPU exchange
    size = kernel.shape[0]
    pad = [(size // 2, size // 2)] * 2 if padding is None else padding
    y = jax.lax.conv_general_dilated(x, kernel, (stride, stride), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return nn.relu(y + bias)

  def dense(x, name):
    x = jax.lax.all_gather(x, TOWER, axis=-1, tiled=True)
    return x @ params[name]["kernel"] + params[name]["bias"]

  if use_small_stem(small_input, images):
    x = conv(images, "conv1")
  else:
    x = conv(pad_to(images, PAPER_INPUT), "conv1", stride=4, padding="VALID")
  x = max_pool(LocalResponseNorm()(x), 3, 2)  # each tower normalises its own maps
  x = max_pool(LocalResponseNorm()(conv(x, "conv2")), 3, 2)
  x = conv(x, "conv3")
  x = conv(x, "conv4")
  x = max_pool(conv(x, "conv5"), 3, 2)
  # fc6 reads both towers' maps in the grouped model's (H, W, C) flatten order: gather, then flatten.
  x = jax.lax.all_gather(x, TOWER, axis=-1, tiled=True).reshape(x.shape[0], -1)
  x = nn.relu(x @ params["fc6"]["kernel"] + params["fc6"]["bias"])
  x = nn.relu(dense(x, "fc7"))
  return dense(x, "fc8")


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
