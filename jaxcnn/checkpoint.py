"""Orbax checkpoints of the full train state (params, optimizer state, step, RNG, EMA) plus JSON metadata.

The metadata (`run_meta`) names the model, dataset, class count and jaxcnn version, which
`check_run_meta` compares with the config that restores it, and holds what a resumed run continues
from (epoch, batch, last epoch record, host-side controls).

The state is saved as one host (NumPy) copy, so a checkpoint does not depend on the device count it
was written with; the caller places it on its own devices after restoring. Saves are asynchronous:
training continues while Orbax writes, and `close()` waits for the last one.

Which checkpoints are kept: the newest `max_to_keep`, plus the best `keep_best` by a validation
metric (Orbax's AnyPreservationPolicy of LatestN and BestN). Orbax's older `CheckpointManagerOptions(
best_fn=..., max_to_keep=N)` keeps the N best only, so it can delete the newest checkpoint a resumed
run needs.
"""

import contextlib
import dataclasses
import json
import pathlib
import re

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import flags, logging

import jaxcnn
from jaxcnn.configs import default

# Checkpoints written by another major.minor of jaxcnn may hold another state layout.
COMPATIBLE_VERSION_PREFIX = 2  # compare the first two version components


class CheckpointWriteError(OSError):
  """A checkpoint could not be written; the ones before it are intact."""


class Checkpointer:
  """The checkpoints of one run, under `directory`."""

  def __init__(
    self, directory: pathlib.Path, max_to_keep: int = 3, keep_best: int = 0, best_metric: str = "validation_top1_error"
  ):
    if max_to_keep < 1 or keep_best < 0:
      raise ValueError(
        f"need checkpoint_max_to_keep >= 1 and checkpoint_keep_best >= 0, got {max_to_keep}, {keep_best}"
      )
    self.directory = pathlib.Path(directory).absolute()
    policies = [ocp.checkpoint_managers.LatestN(n=max_to_keep)]
    if keep_best:
      # Lower is better for errors and losses; BestN keeps the largest values, hence the minus.
      # Mid-epoch checkpoints carry no metric: LatestN alone decides about them.
      policies.append(
        ocp.checkpoint_managers.BestN(
          get_metric_fn=lambda metrics: -metrics[best_metric], n=keep_best, keep_checkpoints_without_metrics=False
        )
      )
    self._warn_about_incomplete_saves()
    if jax.process_count() > 1:
      # Orbax's barriers on the main thread are by default device all-gathers: on the CPU, gloo ones, which fail
      # on one side and wait forever on the other when the processes reach them over 30 s apart (gloo's
      # rendezvous deadline), e.g. one process still loading data. The coordination service's barriers (as
      # Orbax's asynchronous saves use) wait with a timeout instead.
      flags.FLAGS.experimental_orbax_use_distributed_barrier = True
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        create=True, preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies)
      ),
      item_names=("state", "meta"),
    )

  def _warn_about_incomplete_saves(self) -> None:
    for partial in sorted(self.directory.glob("*.orbax-checkpoint-tmp*")):
      logging.warning("ignoring %s: a checkpoint that was still being written when its process stopped", partial)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state, meta: dict, metrics: dict | None = None) -> None:
    """Starts an asynchronous save of `state` (a host copy) with its metadata."""
    with self._writing():  # the previous save's failure surfaces here too
      self._manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        metrics=metrics,
        force=True,
      )

  def restore(self, template_state, step: int | None = None, check_meta=None):
    """(state, meta) of `step`, shaped and placed like `template_state` (arrays or `jax.ShapeDtypeStruct`s with a
    sharding).

    `check_meta(meta, path)` may refuse a checkpoint (another model, an old version) by raising
    ValueError. Without a step, the newest checkpoint that reads back completely is taken: a damaged
    one (truncated or corrupt files) is skipped, with a warning naming it, in favour of the one before.
    """
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), template_state)
    return self._restore(ocp.args.StandardRestore(target), step, check_meta)

  def restore_subtree(self, template: dict, step: int | None = None, check_meta=None):
    """(part of the state, meta): only the entries of `template` (a dict of ShapeDtypeStruct trees, e.g.
    {"params", "batch_stats"}) are read, as NumPy arrays; the rest (optimizer state) stays on disk.

    Steps, `check_meta` and damaged checkpoints are handled as by `restore`.
    """
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), template)
    return self._restore(
      ocp.args.PyTreeRestore(item=template, restore_args=restore_args, partial_restore=True), step, check_meta
    )

  def read_meta(self, step: int | None = None) -> dict | None:
    """The metadata of `step` (default: the latest checkpoint); None without such a checkpoint or where it cannot
    be read (a restore then says why or takes an older one)."""
    step = self.latest_step() if step is None else step
    if step not in self.steps():
      return None
    try:
      return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    except Exception:  # noqa: BLE001  (any read failure: the restore reports it)
      return None

  def _restore(self, state_args, step: int | None, check_meta):
    available = self.steps()
    if not available:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    if step is not None and step not in available:
      raise ValueError(f"no checkpoint for step {step} in {self.directory}; available steps: {available}")
    problems = []
    for candidate in [step] if step is not None else available[::-1]:
      path = self.directory / str(candidate)
      try:
        meta = self._manager.restore(candidate, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
      except Exception as e:  # noqa: BLE001  (any read failure means this checkpoint is damaged)
        problems.append(f"{path}: {_first_line(e)}")
      else:
        if check_meta is not None:
          check_meta(meta, path)
        try:
          state = self._manager.restore(candidate, args=ocp.args.Composite(state=state_args)).state
        except Exception as e:  # noqa: BLE001
          problems.append(f"{path}: {_first_line(e)}")
        else:
          return state, meta
      logging.warning("skipping damaged checkpoint %s", problems[-1])
    raise ValueError(f"no readable checkpoint in {self.directory}: {'; '.join(problems)}")

  def wait_until_finished(self) -> None:
    """Waits for pending (asynchronous) saves."""
    with self._writing():
      self._manager.wait_until_finished()

  @contextlib.contextmanager
  def _writing(self):
    """A failed write (disk full, permissions) as one short CheckpointWriteError naming the cause and the
    checkpoint kept; Orbax's whole message (kilobytes, from tensorstore) goes to the log."""
    try:
      yield
    except Exception as e:  # noqa: BLE001  (whatever the storage layer raises)
      text = " ".join(str(e).split())
      logging.error("writing a checkpoint in %s failed: %s: %s", self.directory, type(e).__name__, text)
      known = re.search(r"No space left on device|Disk quota exceeded|Permission denied|Read-only file system", text)
      cause = known.group(0) if known else f"{type(e).__name__}: {text[:80]}"
      kept = self._manager.latest_step()
      raise CheckpointWriteError(
        f"cannot write a checkpoint in {self.directory} ({cause}); the last complete one, "
        f"{'step ' + str(kept) if kept is not None else 'none'}, is kept: fix that and run the same command to resume"
      ) from e

  def close(self) -> None:
    """Waits for pending (asynchronous) saves, then releases the manager."""
    self.wait_until_finished()  # after a failed write, the manager is left to the process's end: closing it then
    self._manager.close()  # races Orbax's own threads ("Event loop is closed" from each)


def restore_template(make_state, fields: tuple[str, ...] | None = None):
  """What a checkpoint is restored into: the shapes of the state `make_state()` makes (a fresh one; evaluated with
  `jax.eval_shape`, so a restore never runs the model's initialisation).

  Without `fields`: the whole state, every leaf placed on this process's first device (`Checkpointer.restore`; the
  caller places the restored state on its devices). With `fields`: a dict of only those entries (a dict's keys or a
  state's attributes), unplaced, for `Checkpointer.restore_subtree`, which reads them as NumPy arrays.
  """
  shapes = jax.eval_shape(make_state)
  if fields is not None:
    return {field: shapes[field] if isinstance(shapes, dict) else getattr(shapes, field) for field in fields}
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda x: x.update(sharding=device), shapes)


def read_weights(path: pathlib.Path, step: int | None = None) -> tuple[dict, dict, dict]:
  """(params, batch_stats, meta) as NumPy trees from a run's workdir or checkpoints folder."""
  path = pathlib.Path(path).absolute()
  directory = path / "checkpoints" if (path / "checkpoints").is_dir() else path
  manager = ocp.CheckpointManager(directory, item_names=("state", "meta"))
  try:
    available = sorted(manager.all_steps())
    if not available:
      raise FileNotFoundError(f"no checkpoint in {directory}")
    step = available[-1] if step is None else step
    if step not in available:
      raise ValueError(f"no checkpoint for step {step} in {directory}; available steps: {available}")
    restored = manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
    )
  finally:
    manager.close()
  return restored.state["params"], restored.state.get("batch_stats", {}), restored.meta


def run_meta(
  config,
  num_classes: int,
  epoch: int,
  record: dict,
  controls: dict,
  batches_done: int = 0,
  data_stats: dict | None = None,
) -> dict:
  """A checkpoint's metadata: what `check_run_meta` checks and what a resumed run continues from.

  `controls` are the host-side controls (dataclasses: plateau, early stopping), saved as their fields.
  `data_stats` are the statistics the run normalised its images with (`data.InputPipeline.stats`): eval and
  predict normalise with them, without reading the training split again.
  """
  return {
    **({"data_stats": data_stats} if data_stats is not None else {}),
    "epoch": epoch,
    "batches_done": batches_done,
    "record": record,
    "model": config.model,
    "dataset": config.dataset,
    "num_classes": num_classes,
    "jaxcnn_version": jaxcnn.__version__,
    "controls": {name: dataclasses.asdict(control) for name, control in controls.items()},
    "config": json.loads(config.to_json_best_effort()),
  }


# What each jaxcnn major.minor changed in what a checkpoint means, for the line that refuses an older one.
CHECKPOINT_CHANGES = {
  "0.2": "per-example dropout masks, linear learning-rate scaling by batch (lr_reference_batch_size), the learning "
  "rate passed to the step, VGG's stretched 7x7 pooling below 224 px and AlexNet's hidden bias 0.1",
}


def check_run_meta(meta: dict, where: pathlib.Path, config, num_classes: int) -> None:
  """Refuses (ValueError) a checkpoint of another jaxcnn version, model, dataset or class count, or one trained
  with other values of default.NETWORK_FIELDS than `config` has."""
  check_version(meta, jaxcnn.__version__, where)
  for key, expected in (("model", config.model), ("dataset", config.dataset), ("num_classes", num_classes)):
    if meta.get(key) != expected:
      raise ValueError(f"checkpoint {where} has {key}={meta.get(key)!r}, but the config asks for {expected!r}")
  if "config" in meta:
    for field, saved, current in default.network_differences(meta["config"], config):
      raise ValueError(
        f"checkpoint {where} was trained with {field}={json.dumps(saved)}, the config has {json.dumps(current)}; "
        f"use the run's own config (leave --config out) or another --workdir"
      )


def check_version(meta: dict, current: str, where: pathlib.Path) -> None:
  """Refuses a checkpoint written by a jaxcnn whose major.minor differs from `current`, saying what changed."""
  saved = str(meta.get("jaxcnn_version", "unknown"))
  prefix = ".".join(current.split(".")[:COMPATIBLE_VERSION_PREFIX])
  if saved.split(".")[:COMPATIBLE_VERSION_PREFIX] != current.split(".")[:COMPATIBLE_VERSION_PREFIX]:
    changed = CHECKPOINT_CHANGES.get(prefix, "the saved state's layout or meaning")
    raise ValueError(
      f"checkpoint in {where} was written by jaxcnn {saved}; this is jaxcnn {current}, which reads only "
      f"{prefix}.x checkpoints (changed since: {changed}); train again, or evaluate it with jaxcnn {saved}"
    )


def _first_line(error: Exception) -> str:
  text = str(error).strip()
  return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
