"""Orbax checkpoints of the full train state (params, optimizer state, step, RNG) plus JSON metadata.

The state is saved unreplicated (one host copy), so a checkpoint does not depend on the device count
it was written with; the caller replicates it again after restoring.
"""

import pathlib

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Keeps the newest `max_to_keep` checkpoints of a run under `directory`."""

  def __init__(self, directory: pathlib.Path, max_to_keep: int = 3):
    if max_to_keep < 1:
      raise ValueError(f"checkpoint_max_to_keep must be >= 1, got {max_to_keep}")
    self.directory = pathlib.Path(directory).absolute()
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_names=("state", "meta"),
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state, meta: dict) -> None:
    self._manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

  def restore(self, template_state, step: int | None = None):
    """(state, meta) of `step` (default: the latest), shaped and placed like `template_state`."""
    available = self.steps()
    if not available:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    step = self.latest_step() if step is None else step
    if step not in available:
      raise ValueError(f"no checkpoint for step {step} in {self.directory}; available steps: {sorted(available)}")
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), template_state)
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def close(self) -> None:
    """Waits for pending (asynchronous) saves, then releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()
