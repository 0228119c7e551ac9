"""Per-layer model summary: layer, output shape, parameters and multiply-adds, with totals
(what torchsummary or Keras' `model.summary()` print).

Shapes come from tracing `init` under `jax.eval_shape`, so even VGG-19's 144M parameters are never
allocated. Multiply-adds are counted from the layer shapes, not from XLA's cost analysis: a layer with a
`kernel` parameter whose last axis is its output channels costs (output positions) x (kernel size),
i.e. out_h*out_w*k_h*k_w*in_c/groups*out_c for a convolution and in*out for a dense layer. That is the
convention behind the published figures (torchvision's "GFLOPS", the ResNet paper's "FLOPs"): convs and
FC layers only, for one image.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn import models

# Image shape and class count of the datasets the named configs use, so a summary needs no data on disk.
DATASETS = {
  "imagenet2012": ((224, 224, 3), 1000),
  "cifar10": ((32, 32, 3), 10),
  "cifar100": ((32, 32, 3), 100),
  "mnist": ((28, 28, 1), 10),
  "fashion_mnist": ((28, 28, 1), 10),
}


@dataclasses.dataclass
class Layer:
  path: tuple[str, ...]
  kind: str
  output_shape: tuple[int, ...]
  params: int = 0
  macs: int = 0
  leaf: bool = True


def _size(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def layers(model: nn.Module, image_shape: tuple[int, ...]) -> tuple[list[Layer], dict]:
  """Every submodule call of `model.init` on one image, in call order, and the variables' shapes.

  `leaf` marks modules without submodules (the table's rows); the others (blocks, Inception modules)
  carry their subtree's totals, which the tests compare with the papers' per-module tables.
  """
  calls: list[Layer] = []

  def record(next_fun, args, kwargs, context):
    if context.method_name != "__call__" or not context.module.scope.path:
      return next_fun(*args, **kwargs)
    layer = Layer(tuple(context.module.scope.path), type(context.module).__name__, ())
    calls.append(layer)
    output = next_fun(*args, **kwargs)
    layer.output_shape = tuple(jax.tree.leaves(output)[0].shape)
    return output

  def init():
    with nn.intercept_methods(record):
      return model.init(jax.random.PRNGKey(0), jnp.zeros((1, *image_shape)), train=False)

  variables = jax.eval_shape(init)
  params = variables.get("params", {})
  for layer in calls:
    subtree = params
    for name in layer.path:
      subtree = subtree.get(name, {}) if isinstance(subtree, dict) else {}
    layer.params = _size(subtree)
    layer.leaf = not any(other.path[: len(layer.path)] == layer.path and other is not layer for other in calls)
    if layer.leaf and "kernel" in subtree:
      layer.macs = math.prod(layer.output_shape[1:-1]) * math.prod(subtree["kernel"].shape)
  for layer in calls:
    if not layer.leaf:
      layer.macs = sum(o.macs for o in calls if o.leaf and o.path[: len(layer.path)] == layer.path)
  return calls, variables


def is_aux(path: tuple[str, ...]) -> bool:
  """Auxiliary (training-only) heads are named with "aux" (GoogLeNet's aux1, aux2)."""
  return any("aux" in name for name in path)


def totals(model: nn.Module, image_shape: tuple[int, ...]) -> dict:
  """Trainable parameters, those of auxiliary heads, non-trainable variables (BatchNorm statistics) and
  inference multiply-adds (auxiliary heads excluded: they are discarded at inference, as in the
  published figures)."""
  rows, variables = layers(model, image_shape)
  params = variables.get("params", {})
  return {
    "params": _size(params),
    "aux_params": _size({name: tree for name, tree in params.items() if is_aux((name,))}),
    "non_trainable": _size({k: v for k, v in variables.items() if k != "params"}),
    "macs": sum(row.macs for row in rows if row.leaf and not is_aux(row.path)),
  }


def table(model: nn.Module, image_shape: tuple[int, ...]) -> str:
  rows, variables = layers(model, image_shape)
  total = totals(model, image_shape)
  lines = [f"{'layer':<44} {'type':<18} {'output shape':<20} {'params':>13} {'mult-adds':>16}"]
  lines.append("-" * len(lines[0]))
  for row in rows:
    if row.leaf:
      shape = "x".join(map(str, row.output_shape[1:]))
      lines.append(f"{'/'.join(row.path):<44} {row.kind:<18} {shape:<20} {row.params:>13,} {row.macs:>16,}")
  lines.append("-" * len(lines[0]))
  aux = f" ({total['aux_params']:,} in training-only auxiliary heads)" if total["aux_params"] else ""
  lines.append(
    f"input {'x'.join(map(str, image_shape))}; trainable params {total['params']:,}{aux}; "
    f"non-trainable {total['non_trainable']:,}; multiply-adds {total['macs']:,} "
    f"({total['macs'] / 1e9:.3f} G) per image at inference"
  )
  return "\n".join(lines)


def input_of(config) -> tuple[tuple[int, int, int], int]:
  """(image shape, classes) of the config's dataset, at `config.image_size` when that is set."""
  if config.dataset in DATASETS:
    (height, width, channels), num_classes = DATASETS[config.dataset]
  else:
    from jaxcnn import data

    dataset = data.load(config)
    (height, width, channels), num_classes = dataset.image_shape, dataset.num_classes
  size = config.get("image_size", 0)
  return ((size, size, channels) if size else (height, width, channels)), num_classes


def print_summary(config) -> None:
  image_shape, num_classes = input_of(config)
  model = models.create(config.model, num_classes=num_classes, **config.get("model_options", {}))
  print(f"{config.model} on {config.dataset} ({num_classes} classes)")
  print(table(model, image_shape))
