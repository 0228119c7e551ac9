"""Train state, the train and eval steps, and the epoch loop.

Data flows one way: config -> input pipeline -> train step -> checkpoint/metrics. The steps are
written for one device's slice of the global batch and reduce over `parallel.AXIS` (gradients with
`pmean`, metric sums with `psum`), so the update equals a single-device step on the global batch;
parallel.py runs them under `pmap` or `jit(shard_map)`.
"""

import dataclasses
import functools
import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax.training import train_state

from jaxcnn import (
  checkpoint,
  compile_cache,
  data,
  inference,
  memory,
  optim,
  parallel,
  preemption,
  reporting,
  transfer,
  visualize,
  workdir_lock,
)
from jaxcnn.metrics import metric_sums, summarize
from jaxcnn.models import layers
from jaxcnn.watchdog import Watchdog


class TrainState(train_state.TrainState):
  batch_stats: Any  # BatchNorm running statistics ({} for models without BatchNorm)
  rng: jax.Array  # raw uint32 PRNG key; dropout keys are folded from it by step (and example, layers.Dropout)
  ema_params: Any  # moving average of params when config.ema_decay > 0, else {}

  def apply_gradients(self, *, grads, learning_rate=None, **kwargs):
    """flax's `apply_gradients`; a `learning_rate` given goes to the optimizer (optim.scale_by_learning_rate)."""
    if learning_rate is None:
      return super().apply_gradients(grads=grads, **kwargs)
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params, learning_rate=learning_rate)
    return self.replace(
      step=self.step + 1, params=optax.apply_updates(self.params, updates), opt_state=opt_state, **kwargs
    )


# XLA's backend optimisation level for the one program that creates a state. Its random initialisers unroll into
# long straight-line code that LLVM's default level spends seconds on (LeNet-5 2.0 s, ResNet-50 7.3 s on a 2-core
# CPU) for a program that runs once; level 1 compiles it in 0.7 s / 4.8 s to the same bits
# (tests/test_train.py::test_a_fresh_state_is_the_same_at_the_fast_compiling_level).
STATE_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def fresh_state(config, model, image_shape, tx, variables=None) -> TrainState:
  """A fresh state: `model` initialised from `config.seed`, or holding given `variables` (imported weights).
  Traceable: `create_train_state` compiles it, `jax.eval_shape` of it is a restore's template."""
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  if variables is None:
    variables = model.init(init_rng, jnp.zeros((1, *image_shape)), train=False)
  params = variables["params"]
  state = TrainState.create(
    apply_fn=model.apply,
    params=params,
    tx=tx,
    batch_stats=variables.get("batch_stats", {}),
    rng=state_rng,
    ema_params=params if config.ema_decay else {},
  )
  return state.replace(step=jnp.zeros((), jnp.int32))  # an array, so that checkpoints hold it like every leaf


def create_train_state(config, model, image_shape, tx, variables=None) -> TrainState:
  """`fresh_state`, made by one compiled program (keys, initialisers, optimizer state): run eagerly, each
  operation compiles a program of its own, ~25 ms apiece on a CPU, dozens of them for the optimizer's zeros."""
  make = functools.partial(fresh_state, config, model, image_shape, tx)
  return jax.jit(make, compiler_options=STATE_COMPILER_OPTIONS)(variables)


@dataclasses.dataclass(frozen=True)
class StepOptions:
  """The config fields a train step needs, hashable so the compiled step can close over them."""

  aux_loss_weight: float = 0.0
  label_smoothing: float = 0.0
  grad_accum_steps: int = 1
  ema_decay: float = 0.0
  compute_dtype: str = "float32"
  skip_nonfinite: bool = False
  freeze_batch_stats: bool = False  # a frozen backbone keeps its BatchNorm statistics too

  @classmethod
  def from_config(cls, config) -> "StepOptions":
    if config.compute_dtype not in ("float32", "bfloat16"):
      raise ValueError(f"compute_dtype must be float32 or bfloat16, got {config.compute_dtype!r}")
    if config.grad_accum_steps < 1:
      raise ValueError(f"grad_accum_steps must be >= 1, got {config.grad_accum_steps}")
    if not 0 <= config.label_smoothing < 1 or not 0 <= config.ema_decay < 1:
      raise ValueError("label_smoothing and ema_decay must be in [0, 1)")
    return cls(
      config.aux_loss_weight,
      config.label_smoothing,
      config.grad_accum_steps,
      config.ema_decay,
      config.compute_dtype,
      config.nan_policy == "skip",
      config.freeze_backbone,
    )


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
  """Mean softmax cross-entropy in float32, on one-hot targets (smoothed when asked)."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets).mean()


def _cast_floats(tree, dtype):
  return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def train_step(state: TrainState, batch: dict, options: StepOptions = StepOptions()):
  """One optimizer step on this device's slice; gradients are averaged over every device.

  Models with auxiliary classifiers (GoogLeNet) `sow` their logits into the `aux_logits` collection
  during training; each adds `aux_loss_weight` times its cross-entropy to the loss. With bfloat16
  compute, params and images are cast for the forward pass only: the gradient flows back through
  the cast to the float32 params, and the loss is taken in float32.

  `batch["learning_rate"]` (every example holds the step's rate, `Run.learning_rates`) is the step's learning rate:
  the compiled step then holds no schedule. Without it, the optimizer's schedule gives the rate.
  """
  grads, sums, batch_stats = _gradients(state, batch, options)
  grads = jax.lax.pmean(grads, parallel.AXIS)
  new_state = state.apply_gradients(
    grads=grads,
    learning_rate=batch["learning_rate"][0] if "learning_rate" in batch else None,
    batch_stats=state.batch_stats if options.freeze_batch_stats else batch_stats,
  )
  if options.ema_decay:
    new_state = new_state.replace(ema_params=_moving_average(state.ema_params, new_state.params, options.ema_decay))
  sums = jax.lax.psum(sums, parallel.AXIS)
  if options.skip_nonfinite:
    new_state, sums = _unless_nonfinite(new_state, state, grads, sums)
  if "stop_requested" in batch:  # any process's stop request (preemption.StopRequests), agreed by every device
    sums["stop_requested"] = jax.lax.pmax(jnp.max(batch["stop_requested"]), parallel.AXIS)
  return new_state, sums


def _gradients(state: TrainState, batch: dict, options: StepOptions):
  """(gradient of the loss on this device's slice, its metric sums, the updated BatchNorm statistics), before any
  reduction over the devices; with grad_accum_steps > 1, the slice's micro-batches in sequence (`jax.lax.scan`):
  the same mean gradient as the whole slice at a fraction of the memory."""
  # One dropout key for every device; each example's mask comes from its index in the global batch, so that
  # the device count does not change the masks (layers.Dropout).
  step_rng = jax.random.fold_in(state.rng, state.step)
  first_example = jax.lax.axis_index(parallel.AXIS) * batch["image"].shape[0]
  loss_fn = functools.partial(_loss, state.apply_fn, options, step_rng, first_example)
  grad_fn = jax.grad(loss_fn, has_aux=True)
  if options.grad_accum_steps == 1:
    grads, (sums, batch_stats) = grad_fn(state.params, state.batch_stats, batch["image"], batch["label"], 0)
    return grads, sums, batch_stats
  k = options.grad_accum_steps
  micro = jax.tree.map(lambda x: x.reshape(k, x.shape[0] // k, *x.shape[1:]), batch)

  def accumulate(carry, inputs):
    grads_sum, sums_sum, batch_stats = carry
    i, images, labels = inputs
    grads, (sums, batch_stats) = grad_fn(state.params, batch_stats, images, labels, i)
    return (jax.tree.map(jnp.add, grads_sum, grads), jax.tree.map(jnp.add, sums_sum, sums), batch_stats), None

  zeros = jax.tree.map(jnp.zeros_like, state.params)
  zero_sums = {name: jnp.zeros((), jnp.float32) for name in ("loss", "top1", "top5", "count")}
  (grads, sums, batch_stats), _ = jax.lax.scan(
    accumulate, (zeros, zero_sums, state.batch_stats), (jnp.arange(k), micro["image"], micro["label"])
  )
  return jax.tree.map(lambda g: g / k, grads), sums, batch_stats


def _loss(apply_fn, options: StepOptions, step_rng, first_example, params, batch_stats, images, labels, micro_step):
  """(loss, (metric sums, updated BatchNorm statistics)) of one (micro-)batch: `micro_step` of those starting at
  global example `first_example`, with the step's dropout key."""
  dtype = jnp.dtype(options.compute_dtype)
  # Collections a model does not use come back empty, so every model takes the same path.
  with (
    layers.cross_replica_batch_norm(parallel.AXIS),
    layers.global_example_offset(first_example + micro_step * images.shape[0]),
  ):
    logits, updates = apply_fn(
      {"params": _cast_floats(params, dtype), "batch_stats": batch_stats},
      images.astype(dtype),
      train=True,
      rngs={"dropout": step_rng},
      mutable=["batch_stats", "aux_logits"],
    )
  loss = cross_entropy(logits, labels, options.label_smoothing)
  for aux_logits in jax.tree.leaves(updates.get("aux_logits", {})):
    loss = loss + options.aux_loss_weight * cross_entropy(aux_logits, labels, options.label_smoothing)
  return loss, (metric_sums(logits, labels), updates.get("batch_stats", batch_stats))


def _moving_average(average, params, decay: float):
  """The params' exponential moving average (config.ema_decay) after one more step."""
  return jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, average, params)


def _unless_nonfinite(new_state: TrainState, state: TrainState, grads, sums: dict):
  """nan_policy="skip": (new_state, sums) where the gradient and loss are finite; otherwise the previous weights and
  statistics with the step count advanced (it counts the data seen), zero sums, and `skipped` set to 1."""
  finite = jnp.isfinite(optax.tree.norm(grads)) & jnp.isfinite(sums["loss"])
  kept = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state.replace(step=state.step), state)
  sums = {k: jnp.where(finite, v, 0.0) for k, v in sums.items()} | {"skipped": 1.0 - finite}
  return kept.replace(step=new_state.step), sums


class Run:
  """Everything a training run derives from its config: data, model, optimizer, a fresh or restored state, steps."""

  def __init__(self, config, workdir):
    self.config = config
    self.workdir = pathlib.Path(workdir)
    self.step_options = StepOptions.from_config(config)
    self.checkpointer = checkpoint.Checkpointer(
      self.workdir / "checkpoints",
      config.checkpoint_max_to_keep,
      config.checkpoint_keep_best,
      config.checkpoint_best_metric,
    )
    # A resumed run normalises with the statistics it started with (kept in its checkpoints), not recomputed.
    self.strategy, self.dataset, self.input, self.model = inference.setup(config, self.checkpointer)
    train_split = self.dataset.split("train")
    parallel.batch_layout(config.batch_size)  # fail early on a batch the devices cannot share
    devices, accum = jax.device_count(), config.grad_accum_steps
    parallel.split_evenly(
      config.batch_size, devices * accum, "batch_size", f"{devices} devices x {accum} micro-batches (grad_accum_steps)"
    )
    self.steps_per_epoch = data.num_batches(len(train_split), config.batch_size, drop_remainder=True)
    if self.steps_per_epoch == 0:
      raise ValueError(f"batch_size {config.batch_size} is larger than the {len(train_split)} training examples")
    stop_on_validation = config.stop_at_accuracy and config.stop_at_accuracy_split == "validation"
    if config.schedule == "plateau" or config.early_stopping_patience or stop_on_validation:
      self.dataset.split("validation")  # all three watch the validation split
    self.schedule = optim.learning_rate_schedule(config, self.steps_per_epoch)
    self.learning_rates = optim.learning_rates(self.schedule)  # (first step, count) -> the steps' rates
    self._tx = optim.create(
      config, self.steps_per_epoch, functools.partial(transfer.parameter_groups, num_classes=self.dataset.num_classes)
    )
    self._eval_step_called = False  # its first call compiles (or loads) it
    # Images per eval batch of each split; the memory plan (`plan_memory`) may lower the config's.
    self.eval_images = {name: self.input.eval_images_per_step(name) for name in self.eval_splits}

  @property
  def eval_splits(self) -> list[str]:
    """The splits this run evaluates (`InputPipeline.evaluated_splits`)."""
    return self.input.evaluated_splits

  def new_state(self) -> TrainState:
    """A fresh state of this run's model, seed and optimizer (`create_train_state`)."""
    return create_train_state(self.config, self.model, self.input.image_shape, self._tx)

  def make_state(self) -> TrainState:
    """What `new_state` compiles, traceable: `jax.eval_shape(run.make_state)` gives its shapes, computing nothing."""
    return fresh_state(self.config, self.model, self.input.image_shape, self._tx)

  @functools.cached_property
  def eval_step(self):
    """The compiled eval step, the one --mode=eval loads (`inference.compile_step`)."""
    return inference.compile_step(self.strategy, self.model, self.config, inference.eval_step, "eval_step")

  def eval_variables(self, device_state) -> dict:
    """{"": the raw weights, "ema_": their moving average (when kept)} as the eval step's variables."""
    weights = {"": device_state.params, **({"ema_": device_state.ema_params} if self.config.ema_decay else {})}
    return {variant: {"params": params, "batch_stats": device_state.batch_stats} for variant, params in weights.items()}

  def train_batch_spec(self, per_device: int | None = None) -> dict:
    """The train step's batch argument as ShapeDtypeStructs (`per_device` examples per device: the config's)."""
    shapes = self.input.train_batch_shapes()
    if per_device is not None:
      local = per_device * jax.local_device_count()
      shapes = {k: ((local, *shape[1:]), dtype) for k, (shape, dtype) in shapes.items()}
    local = shapes["label"][0][0]
    # The stop flags (preemption.StopRequests) and the step's learning rate ride in the batch, one per example.
    extra = {"stop_requested": ((local,), np.int32), "learning_rate": ((local,), np.float32)}
    return self.strategy.batch_spec(shapes | extra)

  def plan_memory(self, train_step, host_state, device_state) -> list[str]:
    """Compiles (or loads; runs nothing) the train step and each evaluated split's eval step for the run's shapes
    and checks them against the device's memory (memory.py): a train batch that does not fit stops the run here,
    naming the batch that would; an eval batch that does not fit is made smaller. `host_state` is the state
    `device_state` holds, on the host. Returns the start lines."""
    have = memory.capacity()
    with compile_cache.watch() as compilations:
      train_bytes = memory.step_bytes(train_step.prepare(device_state, self.train_batch_spec()))
    if not memory.fits(train_bytes, have):
      raise memory.OutOfMemoryError(self._train_batch_advice(train_step, device_state, train_bytes, have))
    lines = [f"train step: {compilations.describe()}"]
    eval_args = {"params": host_state.params, "batch_stats": host_state.batch_stats}
    resident = memory.tree_bytes(host_state) - memory.tree_bytes(eval_args)  # the optimizer state stays put
    variables = self.eval_variables(device_state)[""]
    parts = [("train step", train_bytes)]
    for split in self.eval_splits:
      label = f"{split} eval step" + (" for --mode=eval" if split == self.config.eval_split else "")
      self.eval_images[split], need, line = inference.plan_eval_step(
        self.eval_step, self.strategy, self.input, variables, self.dataset.split(split), have, resident, label
      )
      parts.append((f"{split} eval step", need))
      lines.append(line)
    return [memory.describe(parts, have), *lines]

  def _train_batch_advice(self, train_step, device_state, need: int, have: memory.Capacity) -> str:
    """One line for a train batch that does not fit: the largest that would, and the grad_accum_steps that keeps
    the batch (from a second compile at a smaller batch)."""
    config = self.config
    devices, accum = jax.device_count(), config.grad_accum_steps
    micro = config.batch_size // devices // accum

    def bytes_at(micro_batch: int) -> int | None:
      return memory.step_bytes(train_step.prepare(device_state, self.train_batch_spec(micro_batch * accum)))

    fitting = memory.largest_batch(bytes_at, micro, need, have)
    line = (
      f"the train step needs {memory.gib(have.need(need))} at batch_size {config.batch_size} "
      f"({micro * accum} per device on {devices} device(s)) but {have.where} is {memory.gib(have.bytes)}"
    )
    if not fitting:
      return f"{line}; even a much smaller batch does not fit: use a smaller model or input, or bfloat16"
    suggestions = [f"--config.batch_size={fitting * accum * devices} fits"]
    k = memory.grad_accum_hint(config.batch_size, devices, accum, fitting)
    if k:
      suggestions.append(f"--config.grad_accum_steps={k} keeps batch_size {config.batch_size}")
    return f"{line}: {' or '.join(suggestions)} (estimated)"

  def validate(self, device_state, split: str, prefix: str, watchdog=None) -> dict:
    """Metrics of the raw (and averaged) weights on the whole `split` during training (`inference.split_metrics`),
    keys `{variant}{prefix}_...` (no confusion matrix: --mode=eval gives it). Each completed eval step is reported to
    `watchdog` (jaxcnn.watchdog.Watchdog), when given."""
    results = {}
    for variant, variables in self.eval_variables(device_state).items():
      if watchdog is not None and not self._eval_step_called:
        watchdog.expect_compile("compiling the eval step")
      self._eval_step_called = True
      batches = self.input.eval_batches(split, self.eval_images[split])
      label = f"{variant}{split} eval step"
      metrics = inference.split_metrics(
        self.strategy, self.eval_step, variables, batches, label, variant + prefix, watchdog
      )
      metrics.pop(f"{variant}{prefix}_confusion")
      results.update(metrics)
    return results

  def restore(self, step: int | None = None) -> tuple[TrainState, dict]:
    """(state on the host, metadata) of a checkpoint (the latest by default), refusing one of another model,
    dataset or jaxcnn version; restored into the shapes of `make_state`, which is never run."""
    check = functools.partial(checkpoint.check_run_meta, config=self.config, num_classes=self.dataset.num_classes)
    return self.checkpointer.restore(checkpoint.restore_template(self.make_state), step, check)


# Config fields that do not enter the compiled train step (as the batch carries the learning rate: see train_step),
# left out of its key in the compilation cache so that runs differing only in them share one executable. A denylist:
# a field added later stays in the key until it is shown not to enter the step. tests/test_compile_cache.py lowers
# the step under configs differing in each field listed and checks that the programs are the same text.
TRAIN_STEP_UNKEYED = (
  # How long and on which files: the epoch count and the data's size (steps per epoch) only entered the
  # learning-rate schedule; shapes, dtypes and placements of the batch are in the key as arguments.
  "num_epochs",
  "data_dir",
  "validation_size",
  "validation_fraction",
  # The learning-rate schedule: computed on the host, its value passed in with the batch.
  "learning_rate",
  "lr_reference_batch_size",
  "schedule",
  "lr_boundaries_epochs",
  "lr_boundaries_steps",
  "lr_decay_factor",
  "lr_decay_every_epochs",
  "warmup_epochs",
  "warmup_steps",
  "warmup_mode",
  "warmup_init_lr",
  # Host-side controls (the plateau factor is a leaf of the optimizer state: an argument).
  "plateau_metric",
  "plateau_factor",
  "plateau_patience",
  "plateau_min_delta",
  "plateau_max_reductions",
  "early_stopping_patience",
  "early_stopping_min_delta",
  "stop_at_accuracy",
  # Evaluation only.
  "eval_split",
  "eval_weights",
  "eval_batch_size",
  # Values the step takes as arguments (initial weights, the PRNG key), and bookkeeping.
  "init_from",
  "init_step",
  "seed",
  "checkpoint_max_to_keep",
  "checkpoint_keep_best",
  "checkpoint_best_metric",
  "checkpoint_every_steps",
  "log_every_steps",
  "step_timeout_seconds",
  "first_step_timeout_seconds",
)


def train_step_key(config) -> str:
  """The train step's key in the compilation cache: the config without TRAIN_STEP_UNKEYED, as sorted JSON, and
  the one thing those fields decide in the step: whether the rate is constant (optim.has_constant_rate)."""
  kept = {field: value for field, value in config.items() if field not in TRAIN_STEP_UNKEYED}
  kept[" constant learning rate"] = optim.has_constant_rate(config)
  return json.dumps(
    {k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in kept.items()}, sort_keys=True, default=str
  )


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or infinite (config.nan_policy="stop")."""


def train_and_evaluate(config, workdir, epochs_per_run: int | None = None) -> dict:
  """Trains up to config.num_epochs epochs, resuming from the latest checkpoint in `workdir`.

  Checkpoints are written at every epoch's end and every `config.checkpoint_every_steps` steps; a
  resumed run continues at the exact batch (the epoch's order is a function of seed and epoch).
  SIGTERM/SIGINT save a checkpoint at the next step and return. `epochs_per_run` stops this
  invocation after that many epochs (job time limits). Early stopping and `config.stop_at_accuracy`
  end the run for good. Returns the last epoch's record (also the last line of WORKDIR/metrics.jsonl).
  """
  if epochs_per_run is not None and epochs_per_run < 1:
    raise ValueError(f"epochs_per_run must be >= 1, got {epochs_per_run}")
  if config.nan_policy not in ("stop", "skip"):
    raise ValueError(f"nan_policy must be 'stop' or 'skip', got {config.nan_policy!r}")
  if not 0 <= config.stop_at_accuracy <= 1:
    raise ValueError(f"stop_at_accuracy is a fraction in [0, 1] (0 = off), got {config.stop_at_accuracy}")
  if config.stop_at_accuracy_split not in ("validation", "test"):
    raise ValueError(f"stop_at_accuracy_split is 'validation' or 'test', got {config.stop_at_accuracy_split!r}")
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  # Watched from before the first wait on other processes (the lock's broadcast, the checkpoint manager's barrier,
  # the restore) to after the last save: a peer that dies or stalls anywhere in between ends this process too. The
  # workdir's lock is taken before anything is written there: one run per workdir.
  with Watchdog.from_config(config) as watchdog, workdir_lock.hold(workdir):
    return _train_and_evaluate(config, workdir, epochs_per_run, watchdog)


def _train_and_evaluate(config, workdir: pathlib.Path, epochs_per_run: int | None, watchdog: Watchdog) -> dict:
  if reporting.is_reporter():
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
  run = Run(config, workdir)
  host_state, start_epoch, batches_done, record, controls = _resume_or_initialise(run)
  end_epoch = config.num_epochs if epochs_per_run is None else min(config.num_epochs, start_epoch + epochs_per_run)
  _print_start(run, host_state, start_epoch)
  compiled_train_step, state = _prepare_steps(run, host_state, watchdog)
  metrics_log, tensorboard = reporting.MetricsLog(workdir), reporting.TensorBoard(workdir)

  def save(host_state, record: dict, epoch_done: int, batches: int = 0, metrics=None):
    meta = checkpoint.run_meta(
      config, run.dataset.num_classes, epoch_done, record, controls, batches, data_stats=run.input.stats
    )
    run.checkpointer.save(int(host_state.step), host_state, meta, metrics)

  try:
    with preemption.StopRequests() as stop_requests:
      for epoch in range(start_epoch, end_epoch):
        state, host_sums, seconds, stopped_at = _train_epoch(
          run,
          compiled_train_step,
          state,
          epoch,
          batches_done if epoch == start_epoch else 0,
          stop_requests,
          watchdog,
          functools.partial(save, record=record, epoch_done=epoch),
          tensorboard,
          first_of_invocation=epoch == start_epoch,
        )
        if stopped_at is not None and stopped_at < run.steps_per_epoch:
          _report_stop(stop_requests.signal_name, epoch * run.steps_per_epoch + stopped_at, epoch, stopped_at)
          return record
        state, host_state, record = _end_epoch(run, state, epoch, host_sums, seconds, controls, watchdog)
        metrics_log.write(record)
        tensorboard.scalars(record["step"], record | {"weight_norm": _weight_norm(host_state.params)})
        if reporting.is_reporter():
          print(reporting.epoch_line(record), flush=True)
        best = config.checkpoint_best_metric
        save(host_state, record, epoch + 1, metrics={best: record[best]} if best in record else None)
        if stopped_at is not None:  # the stop request came at the epoch's last batch
          _report_stop(stop_requests.signal_name, record["step"], epoch, run.steps_per_epoch)
          return record
        if _ended_itself(record):
          _report_end(record, config)
          break
  finally:
    run.checkpointer.close()
    reporting.wait_for_background()  # input_batch.png, eval_views.png: their TensorBoard images before the close
    tensorboard.close()
  reporting.plot_curves(workdir)
  return record


def _weight_norm(params) -> float:
  """The L2 norm of host-side weights, in NumPy: optax's would compile a program per leaf shape at the first epoch's
  end (~1.2 s for LeNet-5's ten leaves on a 2-core CPU)."""
  return float(np.sqrt(sum(np.sum(np.square(leaf, dtype=np.float64)) for leaf in jax.tree.leaves(params))))


def _print_start(run: Run, host_state: TrainState, start_epoch: int) -> None:
  """The run's first lines: what trains on what, how, and from which epoch; the input, model and optimizer."""
  if not reporting.is_reporter():
    return
  config = run.config
  print(
    f"Training {config.model} on {config.dataset}: {len(run.dataset.split('train'))} train images, "
    f"{run.steps_per_epoch} steps/epoch of {config.batch_size} on {jax.device_count()} device(s) "
    f"({run.strategy.name}, {config.compute_dtype}), epochs {start_epoch + 1}..{config.num_epochs}",
    flush=True,
  )
  num_params = sum(x.size for x in jax.tree.leaves(host_state.params))
  options = ", ".join(f"{k}={v}" for k, v in sorted(config.model_options.items()))
  model_line = f"model: {config.model} ({num_params:,} parameters{'; ' + options if options else ''})"
  lines = [
    *run.input.describe(),
    model_line,
    *transfer.describe(config, host_state.params, run.dataset.num_classes),
    *optim.describe(config),
  ]
  print("\n".join(f"  {line}" for line in lines), flush=True)


def _prepare_steps(run: Run, host_state: TrainState, watchdog: Watchdog):
  """(the compiled train step, the state on the devices): the train and eval steps compiled or loaded and fitted to
  the device's memory (`Run.plan_memory`, whose lines this prints)."""
  compiled_train_step = compile_cache.SavedExecutable(
    run.strategy.compile(functools.partial(train_step, options=run.step_options), donate_state=True),
    "train_step",
    train_step_key(run.config),
    run.strategy.compiles_ahead_of_time,
  )
  state = run.strategy.put_state(host_state)
  watchdog.expect_compile("compiling the train and eval steps")
  plan = run.plan_memory(compiled_train_step, host_state, state)
  if run.strategy.compiles_ahead_of_time:
    watchdog.progress("the train and eval steps are ready")
  else:  # the plan compiled nothing: the first train step compiles (parallel.Pmap.compiles_ahead_of_time)
    watchdog.expect_compile("compiling the train step")
  if reporting.is_reporter():
    print("\n".join(f"  {line}" for line in plan), flush=True)
  return compiled_train_step, state


def _resume_or_initialise(run: Run) -> tuple[TrainState, int, int, dict, dict]:
  """The latest checkpoint's state, or a fresh one (with config.init_from's backbone) for a new run, on the host.

  Returns it with where training continues: (state, epoch, batches of it done, last epoch record, host-side
  controls). A run that ended itself (early stopping, stop_at_accuracy) continues at num_epochs, i.e. not at all.
  """
  config = run.config
  if run.checkpointer.latest_step() is None:
    state = run.new_state()
    if config.init_from:
      state = transfer.transfer_weights(state, config, run.dataset.num_classes)  # the start lines say it
    return state, 0, 0, {}, _controls(config, {})
  state, meta = run.restore()
  epoch, batches_done, record = meta["epoch"], meta.get("batches_done", 0), meta["record"]
  if reporting.is_reporter():
    step = int(state.step)
    print(f"Resuming from step {step} (epoch {epoch + 1}, batch {batches_done}) in {run.workdir}", flush=True)
  if _ended_itself(record):
    epoch = config.num_epochs
  return state, epoch, batches_done, record, _controls(config, meta.get("controls", {}))


def _controls(config, saved: dict) -> dict:
  """The host-side controls (plateau, early stopping), continued from a checkpoint's saved state."""
  controls = {}
  if config.schedule == "plateau":
    controls["plateau"] = optim.ReduceOnPlateau(
      config.plateau_factor, config.plateau_patience, config.plateau_min_delta, config.plateau_max_reductions
    )
  if config.early_stopping_patience:
    controls["early_stopping"] = optim.EarlyStopping(config.early_stopping_patience, config.early_stopping_min_delta)
  for name, control in controls.items():
    for field, value in saved.get(name, {}).items():
      setattr(control, field, value)
  return controls


def _train_epoch(
  run: Run,
  compiled_train_step,
  state,
  epoch: int,
  skip: int,
  stop_requests,
  watchdog,
  save_mid_epoch,
  tensorboard,
  first_of_invocation: bool,
):
  """Trains `epoch` from batch `skip` on; returns (state, per-step metric sums on the host, seconds, stopped_at).

  `stopped_at` is the epoch's batch (1-based) after which a stop request ended it, else None. Periodic
  and stop checkpoints inside the epoch go through `save_mid_epoch(host_state, batches_done)`. In the
  `first_of_invocation` epoch, the first batch goes to `visualize.after_first_step` on the report thread:
  input_batch.png, eval_views.png and their images in `tensorboard` (what the model sees, augmentation included).

  At most parallel.MAX_STEPS_IN_FLIGHT steps are in flight (see there why); each completed step is reported
  to the watchdog, and its agreed stop flag read: every process completes the same steps at the same
  iteration, so all of them stop after the same step.
  """
  config, strategy = run.config, run.strategy
  bar = reporting.ProgressBar(run.steps_per_epoch, f"epoch {epoch + 1}/{config.num_epochs}")
  first_step = epoch * run.steps_per_epoch + skip + 1  # global step number of the epoch's first new batch
  in_flight = parallel.InFlight(strategy.to_host, watchdog.progress)
  start, host_sums, stopped_at = time.perf_counter(), [], None
  rates = run.learning_rates(epoch * run.steps_per_epoch, run.steps_per_epoch)  # the epoch's, as the schedule gives
  with memory.naming_out_of_memory("train step", lambda: _train_sizes(config), _TRAIN_BATCH_ADVICE):
    for i, batch in enumerate(run.input.train_batches(epoch, start_batch=skip), start=skip + 1):
      local = len(batch["label"])
      batch = {
        **batch,
        "stop_requested": stop_requests.flags(local),
        "learning_rate": np.full(local, rates[i - 1], np.float32),
      }
      state, step_sums = compiled_train_step(state, strategy.put_batch(batch))
      step = epoch * run.steps_per_epoch + i
      new_sums = in_flight.push(step_sums, f"train step {step} (epoch {epoch + 1}, batch {i})")
      if first_of_invocation and i == skip + 1 and reporting.is_reporter():  # this invocation's first step
        reporting.import_pyplot_in_background()  # for plot_curves at the run's end
        reporting.in_background(visualize.after_first_step, run, batch, step, tensorboard)  # input_batch.png, ...
      periodic = config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0
      logging_point = i % config.log_every_steps == 0 or i == run.steps_per_epoch
      stopping = any(s["stop_requested"] for s in new_sums)
      if logging_point or stopping or periodic:
        new_sums += in_flight.drain()
        stopping = any(s["stop_requested"] for s in new_sums)
      _check_finite(new_sums, first_step + len(host_sums), run.checkpointer, config.nan_policy)
      host_sums += new_sums
      if logging_point or stopping or periodic:
        running = summarize(host_sums, "train")
        bar.update(
          i - skip, (i - skip) * config.batch_size, loss=running["train_loss"], acc=running["train_top1_accuracy"]
        )
      if (stopping or periodic) and i < run.steps_per_epoch:
        save_mid_epoch(strategy.to_host(state), batches=i)
      if stopping:
        stopped_at = i
        break
  bar.close()
  return state, host_sums, time.perf_counter() - start, stopped_at


_TRAIN_BATCH_ADVICE = "lower --config.batch_size, or raise --config.grad_accum_steps to keep it"


def _train_sizes(config) -> str:
  devices = jax.device_count()
  return (
    f"batch_size {config.batch_size}, {config.batch_size // devices // config.grad_accum_steps} examples per device "
    f"and micro-batch on {devices} device(s), {config.compute_dtype}"
  )


def _end_epoch(run: Run, state, epoch: int, host_sums: list[dict], seconds: float, controls: dict, watchdog=None):
  """The epoch's record (train and validation metrics, learning rate, speed) and what the controls decide on it.

  Returns (state, its host copy, record); a plateau reduction changes the learning-rate factor in the state.
  """
  config, strategy = run.config, run.strategy
  host_state = strategy.to_host(state)
  step = int(host_state.step)
  record = {
    "epoch": epoch + 1,
    "step": step,
    "learning_rate": float(run.schedule(step - 1)) * optim.lr_factor(host_state.opt_state),
    **summarize(host_sums, "train"),
    "images_per_sec": len(host_sums) * config.batch_size / seconds,
    "epoch_seconds": seconds,
  }
  if "validation" in run.dataset.splits:
    record.update(run.validate(state, "validation", "validation", watchdog=watchdog))
  if config.stop_at_accuracy_split == "test":  # time to accuracy (jaxcnn.bench): the test split every epoch
    record.update(run.validate(state, "test", "test", watchdog=watchdog))
  if "plateau" in controls and controls["plateau"].update(record[config.plateau_metric]):
    factor = optim.lr_factor(host_state.opt_state) * config.plateau_factor
    host_state = host_state.replace(opt_state=optim.set_lr_factor(host_state.opt_state, factor))
    state = strategy.put_state(host_state)
    record["lr_reduced_to"] = float(run.schedule(step)) * factor
  if "early_stopping" in controls and controls["early_stopping"].update(record["validation_loss"]):
    record["stopped_early"] = True
  if config.stop_at_accuracy and record[_stop_metric(config)] >= config.stop_at_accuracy:
    record["stopped_at_accuracy"] = True
  return state, host_state, record


def _ended_itself(record: dict) -> bool:
  """Whether an epoch's record ended the run for good (early stopping, stop_at_accuracy)."""
  return bool(record.get("stopped_early") or record.get("stopped_at_accuracy"))


def _stop_metric(config) -> str:
  """The accuracy stop_at_accuracy watches (on stop_at_accuracy_split): of the weights --mode=eval evaluates."""
  ema = "ema_" if config.ema_decay and config.eval_weights == "ema" else ""
  return f"{ema}{config.stop_at_accuracy_split}_top1_accuracy"


def _report_stop(signal_name: str, step: int, epoch: int, batch: int) -> None:
  if reporting.is_reporter():
    print(
      f"{signal_name}: saved step {step} (epoch {epoch + 1}, batch {batch}); run the same command to continue",
      flush=True,
    )


def _report_end(record: dict, config) -> None:
  """One line on why the run ended before num_epochs."""
  if not reporting.is_reporter():
    return
  if record.get("stopped_at_accuracy"):
    print(
      f"Stopping: {config.stop_at_accuracy_split} top-1 accuracy {record[_stop_metric(config)]:.2%} reached "
      f"stop_at_accuracy "
      f"{config.stop_at_accuracy:.2%} after epoch {record['epoch']}",
      flush=True,
    )
  else:
    print(f"Stopping early: no better validation loss for {config.early_stopping_patience} epochs", flush=True)


def _check_finite(
  step_sums: list[dict], first_step: int, checkpointer: checkpoint.Checkpointer, nan_policy: str
) -> None:
  """Stops at the first step whose loss is not finite; the checkpoints written before it stay intact."""
  for offset, sums in enumerate(step_sums):
    if nan_policy == "stop" and not np.isfinite(sums["loss"]):
      checkpointer.wait_until_finished()  # so that the last good checkpoint is complete and named below
      latest = checkpointer.latest_step()
      raise NonFiniteLossError(
        f"non-finite loss ({float(sums['loss'])}) at step {first_step + offset}; stopped. "
        f"The last good checkpoint is step {latest} in {checkpointer.directory}"
        if latest is not None
        else f"non-finite loss ({float(sums['loss'])}) at step {first_step + offset}; stopped "
        f"before any checkpoint was written"
      )
    if nan_policy == "skip" and sums.get("skipped", 0):
      logging.warning("step %d: non-finite loss or gradient, update skipped", first_step + offset)
