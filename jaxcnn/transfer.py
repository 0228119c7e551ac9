"""Transfer learning: which parameters form the classifier head, and a backbone taken from another run.

`config.init_from` names a run (or an imported checkpoint, see torchvision_weights.py) whose backbone
params and BatchNorm statistics start this run; the head (the layers with `num_classes` outputs and any
auxiliary classifier) is freshly initialised. With `config.freeze_backbone`, `parameter_groups` labels
the leaves for optax.multi_transform so that only the head trains.
"""

import jax
import jax.numpy as jnp
from absl import logging

from jaxcnn import checkpoint


def _keys(path) -> tuple[str, ...]:
  """A pytree path (DictKey entries) as plain module/parameter names."""
  return tuple(str(getattr(k, "key", k)) for k in path)


def head_modules(params, num_classes: int) -> set[tuple[str, ...]]:
  """Module paths of the classifier head(s): dense layers with `num_classes` outputs, and auxiliary heads.

  Transfer learning re-initialises these and trains them; everything else is the backbone.
  """
  heads = set()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys = _keys(path)
    if keys[-1] == "kernel" and leaf.ndim == 2 and leaf.shape[-1] == num_classes:
      heads.add(keys[:-1])
    if any("aux" in k for k in keys):
      heads.add(keys[: next(i for i, k in enumerate(keys) if "aux" in k) + 1])
  return heads


def _in_heads(keys: tuple[str, ...], heads: set) -> bool:
  return any(keys[: len(h)] == h for h in heads)


def parameter_groups(params, num_classes: int):
  """ "head" / "backbone" for every parameter leaf (optax.multi_transform's labels)."""
  heads = head_modules(params, num_classes)
  return jax.tree_util.tree_map_with_path(
    lambda path, _: "head" if _in_heads(_keys(path), heads) else "backbone", params
  )


def describe(config, params, num_classes: int) -> list[str]:
  """A run's start line on where its backbone comes from and how it trains, and its new head (none without
  init_from, freeze_backbone or a backbone_lr_multiplier)."""
  multiplier = config.backbone_lr_multiplier
  if not (config.init_from or config.freeze_backbone or multiplier != 1.0):
    return []
  sizes = {"head": 0, "backbone": 0}
  for label, leaf in zip(jax.tree.leaves(parameter_groups(params, num_classes)), jax.tree.leaves(params), strict=True):
    sizes[label] += leaf.size
  checkpoint_name = f"step {config.init_step}" if config.init_step else "latest checkpoint"
  source = f"from {config.init_from}'s {checkpoint_name}" if config.init_from else "initialised at random"
  training = "frozen" if config.freeze_backbone else f"trained at {multiplier:g}x the learning rate"
  heads = ", ".join("/".join(head) for head in sorted(head_modules(params, num_classes)))
  return [
    f"transfer: backbone ({sizes['backbone']:,} parameters) {source}, {training}; "
    f"new head {heads} ({sizes['head']:,} parameters)"
  ]


def transfer_weights(state, config, num_classes: int):
  """`state` (a train.TrainState) with the backbone's params and BatchNorm statistics from `config.init_from`."""
  source_params, source_stats, meta = checkpoint.read_weights(config.init_from, config.init_step or None)
  if meta.get("model") != config.model:
    raise ValueError(f"init_from {config.init_from} holds model {meta.get('model')!r}, not {config.model!r}")
  source_options = meta.get("config", {}).get("model_options", {})
  differing = {
    k for k in set(source_options) | set(config.model_options) if source_options.get(k) != config.model_options.get(k)
  }
  if differing:
    # Same shapes, maybe another function (e.g. resnet's stride_in_3x3 for imported v1.5 weights).
    logging.warning(
      "init_from %s was trained with other model_options: %s",
      config.init_from,
      ", ".join(f"{k}={source_options.get(k)!r} here {config.model_options.get(k)!r}" for k in sorted(differing)),
    )
  heads = head_modules(state.params, num_classes)
  source = {"params": source_params, "batch_stats": source_stats}

  def take(collection):
    def pick(path, new):
      keys = _keys(path)
      if _in_heads(keys, heads):
        return new
      old = source[collection]
      for key in keys:
        if key not in old:
          raise ValueError(f"init_from {config.init_from} has no {collection} {'/'.join(keys)}")
        old = old[key]
      if old.shape != new.shape:
        raise ValueError(
          f"init_from {config.init_from}: {collection} {'/'.join(keys)} is {old.shape}, this model needs {new.shape}"
        )
      return jnp.asarray(old, new.dtype)

    return pick

  return state.replace(
    params=jax.tree_util.tree_map_with_path(take("params"), state.params),
    batch_stats=jax.tree_util.tree_map_with_path(take("batch_stats"), state.batch_stats),
  )
