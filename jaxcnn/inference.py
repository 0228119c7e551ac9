"""A checkpoint restored for inference: the model, its weights, the eval input pipeline and compiled steps.

Evaluation and prediction need no optimizer and no train state: only the step, `batch_stats` and
`params` (or `ema_params`, for `eval_weights="ema"`) are read from a checkpoint, through an Orbax partial
restore into the shapes `model.init` gives. The input pipeline is the one training validates with (the
statistics the run normalised with, from its checkpoint; `config.eval_augment`'s views), reading only the
splits it evaluates where the source allows. The steps are written, like train.py's, for one device's slice
of a batch and reduce over `parallel.AXIS`; the eval step is the one training validates with.
"""

import functools
import json
import pathlib
from collections.abc import Collection, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import checkpoint, compile_cache, data, memory, models, parallel, reporting
from jaxcnn.metrics import metric_sums, summarize

WEIGHTS = ("raw", "ema")  # config.eval_weights: the trained params, or their moving average (ema_decay > 0)


class Setup(NamedTuple):
  """What training (train.Run) and inference (`Inference`) both build from a config and a run's checkpoints."""

  strategy: Any  # parallel.Pmap or parallel.ShardMap
  dataset: data.Dataset
  input: data.InputPipeline
  model: Any  # a flax Module


def setup(config, checkpointer: checkpoint.Checkpointer, step: int | None = None, splits=None) -> Setup:
  """The parallel strategy, dataset, input pipeline and model of `config`. Images are normalised with the statistics
  kept in the checkpoint of `step` (default: the latest): a resumed run or an evaluation uses those the run started
  with, not recomputed. `splits`: the only dataset splits to load where the checkpoint has those statistics (None:
  all; without them they are computed from the training split, which is then loaded too)."""
  strategy = parallel.strategy(config.parallelism)
  trained_stats = (checkpointer.read_meta(step) or {}).get("data_stats")
  dataset = data.load(config, splits if trained_stats else None)
  input_pipeline = data.InputPipeline(config, dataset, trained_stats)
  model = models.create(config.model, num_classes=dataset.num_classes, **config.get("model_options", {}))
  return Setup(strategy, dataset, input_pipeline, model)


def initial_weights(model, image_shape: tuple) -> dict:
  """The entries of a fresh train state (train.create_train_state) that inference reads from a checkpoint: "step",
  "params", their average "ema_params" (the params at the start) and "batch_stats"; for `jax.eval_shape`."""
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *image_shape), jnp.float32), train=False)
  params = variables["params"]
  return {
    "step": jnp.zeros((), jnp.int32),
    "params": params,
    "ema_params": params,
    "batch_stats": variables.get("batch_stats", {}),
  }


def variable_shapes(model, image_shape: tuple) -> dict:
  """{"params", "batch_stats"} of `model` as ShapeDtypeStructs (nothing is computed or allocated)."""
  shapes = jax.eval_shape(functools.partial(initial_weights, model, image_shape))
  return {"params": shapes["params"], "batch_stats": shapes["batch_stats"]}


def class_scores(apply_fn, variables: dict, images):
  """Logits for [per_device, H, W, C] images; for [per_device, views, H, W, C] (e.g. AlexNet's ten crops)
  the log of the views' averaged softmax, so that a cross-entropy of it stays meaningful. Taken as a log-mean-exp
  of the views' log-softmax: the log of the averaged probabilities is -inf (an infinite loss for the whole split)
  wherever every view puts a class more than ~104 nats below another (float32's exp underflows)."""
  if images.ndim == 4:
    return apply_fn(variables, images, train=False)
  per_device, views = images.shape[:2]
  logits = apply_fn(variables, images.reshape(per_device * views, *images.shape[2:]), train=False)
  log_probabilities = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(per_device, views, -1)
  return jax.nn.logsumexp(log_probabilities, axis=1) - jnp.log(views)


def eval_step(apply_fn, variables: dict, batch: dict) -> dict:
  """Metric sums and the confusion matrix (rows: true class, columns: predicted) of one eval batch, and under
  `examples` each example's predicted class, its probability, label and mask, in the global batch's order (a few
  bytes an example, for --mode=eval's most confident mistakes; `metrics.summarize` leaves them out)."""
  scores = class_scores(apply_fn, variables, batch["image"])
  num_classes = scores.shape[-1]
  sums = metric_sums(scores, batch["label"], batch["mask"])
  predicted = jnp.argmax(scores, -1)
  # One-hot product rather than a scatter: no scatter sharding rules to meet under jit.
  truth = jax.nn.one_hot(batch["label"], num_classes) * batch["mask"][:, None]
  sums["confusion"] = truth.T @ jax.nn.one_hot(predicted, num_classes)
  examples = {
    "predicted": predicted.astype(jnp.int32),
    "probability": jnp.max(jax.nn.softmax(scores.astype(jnp.float32)), -1),
    "label": batch["label"],
    "mask": batch["mask"],
  }
  return jax.lax.psum(sums, parallel.AXIS) | {"examples": jax.lax.all_gather(examples, parallel.AXIS, tiled=True)}


def probabilities_step(apply_fn, variables: dict, batch: dict):
  """Class probabilities of the whole batch, on every device."""
  probabilities = jax.nn.softmax(class_scores(apply_fn, variables, batch["image"]).astype(jnp.float32))
  return jax.lax.all_gather(probabilities, parallel.AXIS, tiled=True)


# What an eval or predict step computes beyond its arguments' shapes (the class count, views and batch size show
# there): the model. Other fields (epochs, optimizer, data) leave it unchanged and stay out of its key.
STEP_KEY_FIELDS = ("model", "model_options", "parallelism")


def compile_step(strategy, model, config, step_fn, name: str) -> compile_cache.SavedExecutable:
  """`step_fn(model.apply, variables, batch)` compiled for `strategy`, its executable kept in the compilation cache
  as `name` for the config's STEP_KEY_FIELDS. Training's validation and --mode=eval both compile `eval_step` as
  "eval_step", on variables of the same shapes and batches of `eval_batch_size` (padded): an eval after a training
  run loads the step the run compiled, whatever else its config says."""
  compiled = strategy.compile(functools.partial(step_fn, model.apply), donate_state=False)
  fields = {field: config.get(field) for field in STEP_KEY_FIELDS}
  key = json.dumps({k: v.to_dict() if hasattr(v, "to_dict") else v for k, v in fields.items()}, sort_keys=True)
  return compile_cache.SavedExecutable(compiled, name, key, strategy.compiles_ahead_of_time)


def plan_eval_step(step, strategy, input_pipeline, variables, split, have, resident: int = 0, label: str = ""):
  """Compiles (or loads) `step` for `split`'s eval batches and fits them to the device's memory beside `resident`
  bytes per device (`memory.fit_eval`: fewer images per step where the config's do not fit). Returns (images per
  global batch, bytes per device, the start line: where the step came from and the batch it runs)."""
  spec = lambda images: strategy.batch_spec(input_pipeline.eval_batch_shapes(images))
  bytes_at = lambda images: memory.step_bytes(step.prepare(variables, spec(images)))
  asked = input_pipeline.eval_images_per_step(split)
  with compile_cache.watch() as compilations:
    images, need, too_big = memory.fit_eval(bytes_at, asked, have, resident)
  views = input_pipeline.eval_chain.num_views
  per_step = f"{images} images" + (f" x {views} views" if views else "")
  shrunk = (
    f" (made smaller to fit: {asked} images need {memory.gib(have.need(too_big + resident))}; the results are the same)"
    if too_big
    else ""
  )
  return images, need, f"{label}: {compilations.describe()}; {per_step} per step{shrunk}"


def run_steps(
  strategy, step, variables, batches, label: str, watchdog=None, on_first_step=None, on_output=None
) -> list:
  """Host copies of `step(variables, batch)` for every batch, with at most parallel.MAX_STEPS_IN_FLIGHT steps
  dispatched ahead (more can starve XLA:CPU's collectives: see there); each completed step is reported to
  `watchdog` (jaxcnn.watchdog.Watchdog) as "{label} {i}", when given; `on_first_step()` is called after the first
  dispatch; each host copy, in order, goes through `on_output`, when given, and what that returns is kept. The one
  eval loop of training's validation, --mode=eval and --mode=predict. An out-of-memory error of the runtime ends
  in one line naming the step and its batch."""
  in_flight = parallel.InFlight(strategy.to_host, watchdog and watchdog.progress)
  outputs, shape = [], "?"
  keep = on_output or (lambda output: output)
  with memory.naming_out_of_memory(label, lambda: f"this process's batch {shape}", _EVAL_BATCH_ADVICE):
    for i, batch in enumerate(batches, start=1):
      shape = "x".join(map(str, batch["image"].shape))
      dispatched = step(variables, strategy.put_batch(batch))
      if on_first_step is not None and i == 1:
        on_first_step()
      outputs += map(keep, in_flight.push(dispatched, f"{label} {i}"))
    return outputs + list(map(keep, in_flight.drain()))


_EVAL_BATCH_ADVICE = "lower --config.eval_batch_size (the views evaluated at once)"


def split_metrics(
  strategy, step, variables, batches, label: str, prefix: str, watchdog=None, on_first_step=None, on_examples=None
) -> dict:
  """Loss, top-1/top-5 accuracy, example count and confusion matrix of `eval_step` over every batch of a split,
  keys `{prefix}_...` (`metrics.summarize`). `label`, `watchdog` and `on_first_step` as for `run_steps`;
  `on_examples(examples)` receives each step's per-example outputs, which are not kept. Training's validation
  (train.Run.validate) and --mode=eval (`Inference.split_metrics`) both measure a split with this."""

  def without_examples(output: dict) -> dict:
    examples = output.pop("examples")
    if on_examples is not None:
      on_examples(examples)
    return output

  steps = run_steps(strategy, step, variables, batches, label, watchdog, on_first_step, without_examples)
  return summarize(steps, prefix)


def restore_variables(
  checkpointer: checkpoint.Checkpointer, config, model, image_shape: tuple, num_classes: int, step: int | None = None
) -> tuple[dict, int, dict]:
  """({"params", "batch_stats"} as NumPy, step, metadata) of a run's checkpoint (the latest by default).

  The params are the averaged ones for `config.eval_weights="ema"`. A checkpoint of another model,
  dataset, class count or jaxcnn version is refused, as when training resumes.
  """
  weights = "ema_params" if config.eval_weights == "ema" else "params"
  fields = ("step", weights, "batch_stats")
  template = checkpoint.restore_template(functools.partial(initial_weights, model, image_shape), fields)
  restored, meta = checkpointer.restore_subtree(
    template, step, functools.partial(checkpoint.check_run_meta, config=config, num_classes=num_classes)
  )
  return {"params": restored[weights], "batch_stats": restored["batch_stats"]}, int(restored["step"]), meta


class Inference:
  """A trained model restored from WORKDIR/checkpoints with the config's data, ready to evaluate and predict."""

  def __init__(self, config, workdir, step: int | None = None, splits: Collection[str] | None = None):
    """`splits`: the dataset splits this will evaluate (None: all). Images are normalised with the statistics
    the run trained with, kept in its checkpoints; a checkpoint without them (an imported one) has them
    computed from the training split, as the run did (`setup`)."""
    if config.eval_weights not in WEIGHTS:
      raise ValueError(f"eval_weights must be 'raw' or 'ema', got {config.eval_weights!r}")
    if config.eval_weights == "ema" and not config.ema_decay:
      raise ValueError("eval_weights='ema' needs a run trained with ema_decay > 0")
    self.config = config
    self.checkpoint_dir = (pathlib.Path(workdir) / "checkpoints").absolute()
    checkpointer = checkpoint.Checkpointer(self.checkpoint_dir)
    try:
      self.strategy, self.dataset, self.input, self.model = setup(config, checkpointer, step, splits)
      self.variables, self.step, self.meta = restore_variables(
        checkpointer, config, self.model, self.input.image_shape, self.dataset.num_classes, step
      )
    finally:
      checkpointer.close()
    self._device_variables = self.strategy.put_state(self.variables)

  def _planned_batches(self, step, split: data.Split | data.FileSplit, label: str) -> Iterator[dict]:
    """Eval batches of a split (one of the dataset's, or other images to predict), as many images per step as
    fit the device (`plan_eval_step`); prints the memory plan and where the step came from."""
    have = memory.capacity()
    images, need, line = plan_eval_step(step, self.strategy, self.input, self._device_variables, split, have, 0, label)
    if reporting.is_reporter():
      print(f"  {memory.describe([(label, need)], have)}\n  {line}", flush=True)
    return self.input.eval_batches(split, images)

  @functools.cached_property
  def _eval_step(self):
    return compile_step(self.strategy, self.model, self.config, eval_step, "eval_step")

  @functools.cached_property
  def _probabilities_step(self):
    return compile_step(self.strategy, self.model, self.config, probabilities_step, "probabilities_step")

  def split_metrics(self, split: str, watchdog=None, on_first_step=None, on_examples=None) -> dict:
    """Loss, top-1/top-5 accuracy and the confusion matrix on every example of `split`, keys `eval_...`
    (module-level `split_metrics`, whose arguments these are), with as many images per step as fit."""
    label = f"{split} eval step"
    batches = self._planned_batches(self._eval_step, self.dataset.split(split), label)
    step, variables = self._eval_step, self._device_variables
    return split_metrics(self.strategy, step, variables, batches, label, "eval", watchdog, on_first_step, on_examples)

  def probabilities(self, split: data.Split | data.FileSplit, watchdog=None) -> np.ndarray:
    """[examples, classes] class probabilities of a split's images (the views' average where the eval chain
    makes several); each completed step is reported to `watchdog`, when given."""
    batches = self._planned_batches(self._probabilities_step, split, "predict step")
    probabilities = run_steps(
      self.strategy, self._probabilities_step, self._device_variables, batches, "predict step", watchdog
    )
    return np.concatenate(probabilities)[: len(split)]
