"""Train state, the train and eval steps, and the epoch loop.

Data flows one way: config -> input pipeline -> train step -> checkpoint/metrics. The steps run under
`jax.pmap` (see parallel.py): each device sees its slice of the global batch, and gradients and metric
sums are reduced over `parallel.AXIS`, so the update equals a single-device step on the global batch.
"""

import functools
import json
import pathlib
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax.training import train_state

import jaxcnn
from jaxcnn import checkpoint, data, models, optim, parallel, reporting


class TrainState(train_state.TrainState):
  batch_stats: Any  # BatchNorm running statistics ({} for models without BatchNorm)
  rng: jax.Array  # raw uint32 PRNG key; dropout keys are folded from it by step and device


def create_train_state(config, model, image_shape, tx) -> TrainState:
  init_rng, state_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  variables = jax.jit(model.init, static_argnames="train")(init_rng, jnp.zeros((1, *image_shape)), train=False)
  state = TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                            batch_stats=variables.get("batch_stats", {}), rng=state_rng)
  return state.replace(step=jnp.zeros((), jnp.int32))  # an array, so that checkpoints hold it like every leaf


def metric_sums(logits, labels, mask=None) -> dict:
  """Per-batch sums (not means), so that padded examples and uneven batches average correctly."""
  mask = jnp.ones(labels.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
  return {
      "loss": jnp.sum(losses * mask),
      "top1": jnp.sum((jnp.argmax(logits, -1) == labels) * mask),
      "top5": jnp.sum(jnp.any(top5 == labels[:, None], axis=-1) * mask),
      "count": jnp.sum(mask),
  }


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


def train_step(state: TrainState, batch: dict, aux_loss_weight: float = 0.0):
  """One SGD step on this device's slice; gradients are averaged over every device.

  Models with auxiliary classifiers (GoogLeNet) `sow` their logits into the `aux_logits` collection
  during training; each adds `aux_loss_weight` times its cross-entropy to the loss.
  """
  dropout_rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), jax.lax.axis_index(parallel.AXIS))

  def loss_fn(params):
    # Collections a model does not use come back empty, so every model takes the same path.
    logits, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, batch["image"], train=True,
                                     rngs={"dropout": dropout_rng}, mutable=["batch_stats", "aux_logits"])
    loss = cross_entropy(logits, batch["label"])
    for aux_logits in jax.tree.leaves(updates.get("aux_logits", {})):
      loss = loss + aux_loss_weight * cross_entropy(aux_logits, batch["label"])
    return loss, (logits, updates)

  grads, (logits, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
  grads = jax.lax.pmean(grads, parallel.AXIS)
  state = state.apply_gradients(grads=grads, batch_stats=updates.get("batch_stats", state.batch_stats))
  return state, jax.lax.psum(metric_sums(logits, batch["label"]), parallel.AXIS)


def eval_step(state: TrainState, batch: dict) -> dict:
  """Metric sums of one eval batch. Images of [per_device, views, H, W, C] (e.g. AlexNet's ten crops) are
  scored by their views' averaged softmax, returned as log-probabilities so the loss stays a cross-entropy."""
  images = batch["image"]
  if images.ndim == 5:
    per_device, views = images.shape[:2]
    logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                            images.reshape(per_device * views, *images.shape[2:]), train=False)
    probs = jax.nn.softmax(logits.astype(jnp.float32)).reshape(per_device, views, -1).mean(axis=1)
    logits = jnp.log(probs)
  else:
    logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats}, images, train=False)
  return jax.lax.psum(metric_sums(logits, batch["label"], batch["mask"]), parallel.AXIS)


def summarize(sums: list[dict], prefix: str) -> dict:
  """Means from a list of replicated metric sums (one host transfer for the whole list)."""
  totals = {k: float(np.sum([np.asarray(s[k])[0] for s in sums])) for k in sums[0]} if sums else {}
  count = max(totals.get("count", 0.0), 1.0)
  return {f"{prefix}_loss": totals.get("loss", 0.0) / count,
          f"{prefix}_top1_accuracy": totals.get("top1", 0.0) / count,
          f"{prefix}_top5_accuracy": totals.get("top5", 0.0) / count,
          f"{prefix}_num_examples": int(totals.get("count", 0.0))}


def evaluate(p_eval_step, replicated_state, batches, prefix: str) -> dict:
  return summarize(jax.device_get([p_eval_step(replicated_state, batch) for batch in batches]), prefix)


class Run:
  """Everything a train or eval run derives from its config: data, model, optimizer, state template."""

  def __init__(self, config, workdir):
    self.config = config
    self.workdir = pathlib.Path(workdir)
    self.dataset = data.load(config)
    train_split = self.dataset.split("train")
    self.input = data.InputPipeline(config, self.dataset)
    data.batch_layout(config.batch_size)  # fail early on a batch the devices cannot share
    data.batch_layout(config.eval_batch_size)
    self.steps_per_epoch = data.num_batches(len(train_split), config.batch_size, drop_remainder=True)
    if self.steps_per_epoch == 0:
      raise ValueError(f"batch_size {config.batch_size} is larger than the {len(train_split)} training examples")
    self.model = models.create(config.model, num_classes=self.dataset.num_classes, **config.get("model_options", {}))
    self.schedule = optim.learning_rate_schedule(config, self.steps_per_epoch)
    self.state = create_train_state(config, self.model, self.input.image_shape, optim.create(config, self.steps_per_epoch))
    self.checkpointer = checkpoint.Checkpointer(self.workdir / "checkpoints", config.checkpoint_max_to_keep)

  def eval_batches(self, split: str):
    return self.input.eval_batches(split)

  def restore(self, step: int | None = None) -> dict:
    """Loads a checkpoint into self.state, checking it belongs to this model and dataset."""
    state, meta = self.checkpointer.restore(self.state, step)
    for key in ("model", "dataset", "num_classes"):
      expected = self.dataset.num_classes if key == "num_classes" else self.config[key]
      if meta.get(key) != expected:
        raise ValueError(f"checkpoint in {self.checkpointer.directory} has {key}={meta.get(key)!r}, "
                         f"but the config asks for {expected!r}")
    self.state = state
    return meta


def train_and_evaluate(config, workdir, epochs_per_run: int | None = None) -> dict:
  """Trains up to config.num_epochs epochs (resuming from the latest checkpoint), checkpointing every epoch.

  `epochs_per_run` stops this invocation after that many epochs, e.g. for a job scheduler's time
  limit; the next invocation in the same workdir continues exactly where this one stopped.
  Returns the last epoch's record (also the last line of WORKDIR/metrics.jsonl).
  """
  if epochs_per_run is not None and epochs_per_run < 1:
    raise ValueError(f"epochs_per_run must be >= 1, got {epochs_per_run}")
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if reporting.is_reporter():
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
  run = Run(config, workdir)
  start_epoch, record = 0, {}
  if run.checkpointer.latest_step() is not None:
    meta = run.restore()
    start_epoch, record = meta["epoch"], meta["record"]
    logging.info("Resuming from step %d (epoch %d done) in %s", int(run.state.step), start_epoch, workdir)
  if reporting.is_reporter():
    print(f"Training {config.model} on {config.dataset}: {len(run.dataset.split('train'))} train images, "
          f"{run.steps_per_epoch} steps/epoch of {config.batch_size} on {jax.device_count()} device(s), "
          f"epochs {start_epoch + 1}..{config.num_epochs}", flush=True)

  p_train_step = parallel.pmap_step(functools.partial(train_step, aux_loss_weight=config.aux_loss_weight),
                                    donate_state=True)
  p_eval_step = parallel.pmap_step(eval_step, donate_state=False)
  state = parallel.replicate(run.state)
  metrics_log = reporting.MetricsLog(workdir)
  end_epoch = config.num_epochs if epochs_per_run is None else min(config.num_epochs, start_epoch + epochs_per_run)
  for epoch in range(start_epoch, end_epoch):
    bar = reporting.ProgressBar(run.steps_per_epoch, f"epoch {epoch + 1}/{config.num_epochs}")
    batches = run.input.train_batches(epoch)
    start, sums = time.perf_counter(), []
    for i, batch in enumerate(batches, start=1):
      state, step_sums = p_train_step(state, batch)
      sums.append(step_sums)
      if i % config.log_every_steps == 0 or i == run.steps_per_epoch:
        running = summarize(jax.device_get(sums), "train")
        bar.update(i, i * config.batch_size, loss=running["train_loss"], acc=running["train_top1_accuracy"])
    train_metrics = summarize(jax.device_get(sums), "train")
    seconds = time.perf_counter() - start
    bar.close()
    step = int(parallel.unreplicate(state.step))
    record = {"epoch": epoch + 1, "step": step, "learning_rate": float(run.schedule(step - 1)), **train_metrics,
              "images_per_sec": run.steps_per_epoch * config.batch_size / seconds, "epoch_seconds": seconds}
    if "validation" in run.dataset.splits:
      record.update(evaluate(p_eval_step, state, run.eval_batches("validation"), "validation"))
    metrics_log.write(record)
    if reporting.is_reporter():
      print(reporting.epoch_line(record), flush=True)
    run.checkpointer.save(step, parallel.unreplicate(state), checkpoint_meta(config, run, epoch + 1, record))
  run.checkpointer.close()
  return record


def checkpoint_meta(config, run: Run, epoch: int, record: dict) -> dict:
  return {"epoch": epoch, "record": record, "model": config.model, "dataset": config.dataset,
          "num_classes": run.dataset.num_classes, "jaxcnn_version": jaxcnn.__version__,
          "config": json.loads(config.to_json_best_effort())}
