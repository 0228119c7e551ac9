"""Time to a target test accuracy: a named config in jaxcnn, then its PyTorch twin under the same recipe.

  python -m jaxcnn.bench --mode=time_to_accuracy --config=lenet5 --target=0.91 [--compare=pytorch]
      [--config.num_epochs=20 --config.batch_size=256 ...] [--twin_recipe=same|plain|onecycle]
      [--twin.FIELD=VALUE ...] [--jaxcnn_side=run|job] [--tta_repeats=R] [--threads=T] [--json=FILE]

`--config` and its `--config.FIELD=VALUE` overrides are ml_collections' config flag, as in `jaxcnn.main`;
`--twin.FIELD=VALUE` changes a field of the PyTorch side's recipe only (the same config's fields).

Each side runs in its own process, one after the other (never at once), and trains up to the config's
`num_epochs`, evaluating the whole test split after every epoch and stopping at the first epoch whose test
top-1 accuracy reaches `--target`. The time reported is the wall time from starting the process to that
evaluation's end: start-up (imports, data loading), compilation, training and every evaluation included.
With `--tta_repeats=R` the two sides take turns R times, the order alternating (jaxcnn first in odd
rounds, PyTorch first in even ones); each side's time is the median of its rounds.

`--jaxcnn_side=run` (default) runs the project's one training loop, `jaxcnn.train.train_and_evaluate`, in
the worker process (checkpoints, metrics.jsonl, TensorBoard and the curves PNG included, in a temporary
workdir, with `--fast_forms` as given), with `stop_at_accuracy=--target` and `stop_at_accuracy_split="test"`:
the loop evaluates the test split after every epoch and ends the run at the first epoch that reaches the
target. Each epoch's record is passed on as soon as the loop writes it to metrics.jsonl. `--jaxcnn_side=job`
times the real job instead, as README command 1 (launch/quickstart.sh) runs it after its install check:
`python -m jaxcnn.main --config=NAME --workdir=W` (with the same `--config.FIELD=VALUE` overrides), then
`--mode=eval` from its checkpoint, each a process of its own; its one point is the whole config's training
and the eval's test top-1 accuracy, at the end of the eval process. Without `--compilation_cache_dir` each
round of the job starts with an empty compilation cache of its own, as a first-time user's run does (the eval
process loads the eval step the training compiled); with it, that cache ("" = none).

`--twin_recipe=plain` trains the PyTorch side as a plain loop instead of jaxcnn's recipe: `PLAIN_TWIN`
(SGD with momentum 0.9 and weight decay 5e-4 at a constant learning rate of 0.05, batch 128, the whole
training split, no label smoothing, up to 30 epochs); `--twin_recipe=onecycle` as the loop most PyTorch
users write for speed, `ONE_CYCLE_TWIN` (the same with Nesterov momentum and OneCycleLR's shape of learning
rate, peak 0.1, over 12 epochs); `--twin.FIELD=VALUE` changes single fields of the PyTorch side's recipe on top
of any of them.

The PyTorch twin (`jaxcnn.bench.torch_models`) trains on the same examples (this config's
training split, its validation examples left out the same way), normalised with the same mean and standard
deviation, in the same batch size, dropping the incomplete last batch as jaxcnn does, with SGD (momentum,
Nesterov, coupled weight decay on every weight) at jaxcnn's own learning rate for every step (the config's
schedule evaluated by `jaxcnn.optim`), the same label smoothing, as in-memory tensors. Recipes it cannot
repeat (augmentation, other optimizers, gradient clipping or accumulation, weight averaging) are refused.
"""

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from jaxcnn.bench import worker

# The plain PyTorch loop (--twin_recipe=plain): the textbook recipe, every training image, no schedule.
PLAIN_TWIN = {
  "validation_size": 0,
  "batch_size": 128,
  "learning_rate": 0.05,
  "schedule": "constant",
  "warmup_epochs": 0.0,
  "warmup_steps": 0,
  "momentum": 0.9,
  "nesterov": False,
  "weight_decay": 5e-4,
  "label_smoothing": 0.0,
  "num_epochs": 30,
}

# The one-cycle PyTorch loop (--twin_recipe=onecycle), as `torch.optim.lr_scheduler.OneCycleLR` shapes the
# learning rate (Smith & Topin 2017): from max_lr/25 up to max_lr over the first 30% of the steps, then a
# cosine down; Nesterov SGD, batch 128, every training image, 12 epochs. (OneCycleLR also cycles the momentum
# between 0.85 and 0.95; this twin keeps 0.9, and its cosine ends at 0 rather than max_lr/1e4.)
ONE_CYCLE_TWIN = {
  **PLAIN_TWIN,
  "learning_rate": 0.1,
  "schedule": "cosine",
  "warmup_epochs": 0.3 * 12,
  "warmup_init_lr": 0.1 / 25,
  "nesterov": True,
  "num_epochs": 12,
}
TWIN_RECIPES = {"same": {}, "plain": PLAIN_TWIN, "onecycle": ONE_CYCLE_TWIN}

_UNSUPPORTED = {
  "optimizer": "sgd",
  "weight_decay_mode": "coupled",
  "decay_biases_and_norms": True,
  "grad_clip_norm": 0.0,
  "grad_accum_steps": 1,
  "ema_decay": 0.0,
  "train_augment": "",
  "eval_augment": "",
  "compute_dtype": "float32",
  "init_from": "",
}


def load_config(name: str, overrides: dict | None = None, twin: dict | None = None):
  """The named config (or config file) with `overrides` (flattened field -> value, as ml_collections' config
  flag gives them) and then `twin` (the PyTorch side's changes, same form) applied."""
  from jaxcnn import configs

  config = configs.get(name)
  for flag, fields in (("--config", overrides or {}), ("--twin", twin or {})):
    for field, value in fields.items():
      *parents, leaf = field.split(".")
      node = config
      for part in parents:
        node = node.get(part) if hasattr(node, "get") else None
      if not hasattr(node, "get") or leaf not in node:
        raise ValueError(f"{flag}.{field}: config {name!r} has no field {field!r}")
      config.update_from_flattened_dict({field: value})
  if "learning_rate" in (overrides or {}) and "lr_reference_batch_size" not in overrides:
    config.lr_reference_batch_size = 0  # as jaxcnn.main takes a typed rate: the rate wanted, at any batch
  return config


def twin_fields(recipe: str, twin_overrides: dict) -> dict:
  """The fields that make the PyTorch side's recipe differ from jaxcnn's: --twin_recipe, then --twin.FIELD."""
  return {**TWIN_RECIPES[recipe], **twin_overrides}


def check_twin_recipe(config) -> None:
  """Raises ValueError for a recipe the PyTorch twin does not repeat."""
  if config.schedule == "plateau":
    raise ValueError("the PyTorch twin follows a fixed schedule; schedule='plateau' depends on validation")
  for field, supported in _UNSUPPORTED.items():
    if config.get(field, supported) != supported:
      raise ValueError(f"the PyTorch twin does not repeat {field}={config[field]!r} (it needs {supported!r})")


def write_twin_inputs(config, directory: pathlib.Path) -> dict:
  """The PyTorch twin's data (jaxcnn's splits), normalisation and per-step learning rates, in `directory`."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from jaxcnn import data, optim

  dataset = data.load(config)
  train, test = dataset.split("train"), dataset.split("test")
  if not hasattr(train, "images"):
    raise ValueError(f"the PyTorch twin trains on in-memory datasets; {config.dataset!r} is read from files")
  pipeline = data.InputPipeline(config, dataset)
  steps_per_epoch = len(train) // config.batch_size
  schedule = optim.learning_rate_schedule(config, steps_per_epoch)
  rates = np.asarray(jax.vmap(schedule)(jnp.arange(steps_per_epoch * config.num_epochs)), np.float32)
  np.savez(
    directory / "data.npz",
    train_images=train.images,
    train_labels=train.labels,
    test_images=test.images,
    test_labels=test.labels,
    mean=pipeline.mean,
    std=pipeline.std,
    learning_rates=rates,
  )
  return {
    "data": str(directory / "data.npz"),
    "num_classes": dataset.num_classes,
    "model": config.model,
    "image_shape": list(pipeline.image_shape),
    "batch_size": config.batch_size,
    "eval_batch_size": config.eval_batch_size,
    "num_epochs": config.num_epochs,
    "momentum": config.momentum,
    "nesterov": config.nesterov,
    "weight_decay": config.weight_decay,
    "label_smoothing": config.label_smoothing,
    "seed": config.seed,
  }


def jaxcnn_until(spec: dict, emit) -> None:
  """Trains spec's config with `train.train_and_evaluate`, stopping at the target; emit(epoch, test accuracy)
  for each epoch's record as the loop writes it to metrics.jsonl."""
  from jaxcnn import compile_cache, fast_forms

  print(fast_forms.enable() if spec["fast_forms"] else fast_forms.disable(), file=sys.stderr, flush=True)
  compile_cache.enable(spec["compilation_cache_dir"])
  from jaxcnn import train

  config = load_config(spec["config"], spec["overrides"])
  config.stop_at_accuracy, config.stop_at_accuracy_split = spec["target"], "test"
  with tempfile.TemporaryDirectory() as workdir:
    metrics, done, emitted = pathlib.Path(workdir, "metrics.jsonl"), threading.Event(), []

    def follow() -> None:  # each record as soon as it is written (train_and_evaluate appends whole lines)
      while True:
        finished = done.is_set()
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        for line in lines[len(emitted) :]:
          emitted.append(json.loads(line))
          emit(emitted[-1]["epoch"], emitted[-1]["test_top1_accuracy"])
        if finished:
          return
        time.sleep(0.05)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    try:
      train.train_and_evaluate(config, workdir)
    finally:
      done.set()
      follower.join()


def jaxcnn_job_until(spec: dict, emit) -> None:
  """Trains spec's config as README command 1 does (train, then eval from the checkpoint, each a process of
  its own); emit(num_epochs, the eval's test accuracy) once the eval process has ended."""
  flags = [f"--config={spec['config']}"] + [f"--config.{k}={v}" for k, v in spec["overrides"].items()]
  flags.append("--fast_forms" if spec["fast_forms"] else "--nofast_forms")
  with tempfile.TemporaryDirectory() as root:
    workdir, cache = pathlib.Path(root, "workdir"), spec["compilation_cache_dir"]
    # Without --compilation_cache_dir, a first-time user's cache: empty, then filled by the training process and
    # read by the eval process (the default directory would carry whatever earlier runs left there).
    flags.append(f"--compilation_cache_dir={pathlib.Path(root, 'cache') if cache is None else cache}")
    for mode in ("train", "eval"):
      subprocess.run(
        [sys.executable, "-m", "jaxcnn.main", f"--workdir={workdir}", f"--mode={mode}", *flags],
        stdout=sys.stderr,  # the worker's stdout is the protocol's channel
        check=True,
      )
    results = json.loads((workdir / "eval_results.json").read_text())
    emit(json.loads((workdir / "config.json").read_text())["num_epochs"], results["top1_accuracy"])


def pytorch_until(spec: dict, emit) -> None:
  """The PyTorch twin of jaxcnn_until under the recipe in spec (see write_twin_inputs)."""
  twins = worker.torch_models()
  import numpy as np
  import torch
  import torch.nn.functional as F

  torch.set_num_threads(len(os.sched_getaffinity(0)))
  torch.manual_seed(spec["seed"])
  arrays = np.load(spec["data"])
  mean, std = arrays["mean"], arrays["std"]

  def tensor(images):  # uint8 NHWC -> normalised float32 NCHW in channels_last memory
    normalised = (images.astype(np.float32) / 255.0 - mean) / std
    return torch.from_numpy(normalised).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)

  train_x, test_x = tensor(arrays["train_images"]), tensor(arrays["test_images"])
  train_y, test_y = (torch.from_numpy(arrays[k].astype(np.int64)) for k in ("train_labels", "test_labels"))
  rates = arrays["learning_rates"]
  size, _, channels = spec["image_shape"]
  model = twins.MODELS[spec["model"]](spec["num_classes"], channels, size).to(memory_format=torch.channels_last)
  optimizer = torch.optim.SGD(
    model.parameters(),
    lr=float(rates[0]),
    momentum=spec["momentum"],
    nesterov=spec["nesterov"],
    weight_decay=spec["weight_decay"],
  )
  batch, step = spec["batch_size"], 0
  for epoch in range(spec["num_epochs"]):
    model.train()
    order = torch.randperm(len(train_y))
    for start in range(0, len(order) - batch + 1, batch):
      index = order[start : start + batch]
      for group in optimizer.param_groups:
        group["lr"] = float(rates[step])
      optimizer.zero_grad(set_to_none=True)
      F.cross_entropy(model(train_x[index]), train_y[index], label_smoothing=spec["label_smoothing"]).backward()
      optimizer.step()
      step += 1
    model.eval()
    with torch.no_grad():
      correct = sum(
        int((model(test_x[i : i + spec["eval_batch_size"]]).argmax(1) == test_y[i : i + spec["eval_batch_size"]]).sum())
        for i in range(0, len(test_y), spec["eval_batch_size"])
      )
    if emit(epoch + 1, correct / len(test_y)):
      return


def train_until(spec: dict, channel) -> None:
  """The worker's side: trains and writes one JSON line per epoch; stops at the target."""

  def emit(epoch: int, accuracy: float) -> bool:
    channel.write(json.dumps({"epoch": epoch, "test_top1_accuracy": float(accuracy)}) + "\n")
    return accuracy >= spec["target"]

  sides = {
    "time_to_accuracy_jaxcnn": jaxcnn_job_until if spec.get("jaxcnn_side") == "job" else jaxcnn_until,
    "time_to_accuracy_pytorch": pytorch_until,
  }
  sides[spec["side"]](spec, emit)


def time_side(spec: dict) -> dict:
  """Runs one side in a worker process; the wall time from its start to each epoch's evaluation."""
  process = worker.Worker({**spec, "serve": "time_to_accuracy"}, name=spec["side"])
  process.process.stdin.close()
  epochs = []
  while (message := process.receive(until_end=True)) is not None:
    epochs.append({**message, "wall_seconds": time.perf_counter() - process.started})
    print(
      f"  {spec['side'][len('time_to_accuracy_') :]}: epoch {epochs[-1]['epoch']}, test accuracy "
      f"{epochs[-1]['test_top1_accuracy']:.4f} at {epochs[-1]['wall_seconds']:.1f} s",
      flush=True,
    )
  reached = [e for e in epochs if e["test_top1_accuracy"] >= spec["target"]]
  return {
    "epochs": epochs,
    "reached": bool(reached),
    "seconds_to_target": reached[0]["wall_seconds"] if reached else None,
    "epochs_to_target": reached[0]["epoch"] if reached else None,
  }


def _combine(rounds: list[dict]) -> dict:
  """One side's rounds -> its result: the first round's epochs, the median time to the target over the rounds
  (None unless every round reached it), each round's time."""
  times = [r["seconds_to_target"] for r in rounds]
  reached = all(r["reached"] for r in rounds)
  return {
    **rounds[0],
    "reached": reached,
    "seconds_to_target": statistics.median(times) if reached else None,
    "round_seconds_to_target": times,
  }


def main(flags, name: str, overrides: dict, twin_overrides: dict) -> None:
  """The time-to-accuracy mode: `name` is --config as typed, `overrides` and `twin_overrides` the
  --config.FIELD and --twin.FIELD values (flattened)."""
  config = load_config(name, overrides)
  twin_config = load_config(name, overrides, twin_fields(flags.twin_recipe, twin_overrides))
  if flags.compare:
    check_twin_recipe(twin_config)
  base = {
    "config": name,
    "overrides": overrides,
    "target": flags.target,
    "threads": flags.threads,
    "fast_forms": flags.fast_forms,
    "compilation_cache_dir": flags.compilation_cache_dir,
  }
  changes = ",".join(f"{k}={v}" for k, v in twin_overrides.items())
  twin_recipe = f"{flags.twin_recipe} recipe" + (f", {changes}" if changes else "")
  print(
    f"time to {flags.target:.2%} test accuracy: {name} ({config.num_epochs} epochs at most; jaxcnn "
    f"{'job: train, then eval' if flags.jaxcnn_side == 'job' else 'train_and_evaluate'})"
    + (f" vs its PyTorch twin ({twin_recipe}, {twin_config.num_epochs} epochs at most)" if flags.compare else "")
    + f", each side in its own process, one after the other, {flags.tta_repeats} round(s) in alternating order, "
    f"on {flags.threads or len(os.sched_getaffinity(0))} CPU threads; wall time from process start (start-up, "
    f"compile, train and eval included)",
    flush=True,
  )
  results = {
    "config": name,
    "overrides": overrides,
    "target": flags.target,
    "jaxcnn_side": flags.jaxcnn_side,
    "twin_recipe": flags.twin_recipe,
    "twin_overrides": twin_overrides,
  }
  specs = {"jaxcnn": {**base, "side": "time_to_accuracy_jaxcnn", "jaxcnn_side": flags.jaxcnn_side}}
  rounds = {"jaxcnn": []}
  with tempfile.TemporaryDirectory() as tmp:
    if flags.compare:
      twin = write_twin_inputs(twin_config, pathlib.Path(tmp))
      specs["pytorch"] = {**base, **twin, "side": "time_to_accuracy_pytorch"}
      rounds["pytorch"] = []
    for i in range(flags.tta_repeats):
      for side in list(specs) if i % 2 == 0 else reversed(specs):  # ABBA: jaxcnn first in odd rounds
        rounds[side].append(time_side(specs[side]))
  for side, side_rounds in rounds.items():
    results[side] = r = _combine(side_rounds)
    best = max(e["test_top1_accuracy"] for e in r["epochs"])
    outcome = (
      f"{r['seconds_to_target']:.1f} s ({r['epochs_to_target']} epochs)"
      if r["reached"]
      else f"not reached in every round ({len(r['epochs'])} epochs in the first; best {best:.4f})"
    )
    print(f"{side:<8} {outcome}")
  if "pytorch" in results and results["jaxcnn"]["reached"] and results["pytorch"]["reached"]:
    ratio = results["jaxcnn"]["seconds_to_target"] / results["pytorch"]["seconds_to_target"]
    results["time_ratio"] = ratio
    print(f"jaxcnn / PyTorch wall time to target: {ratio:.2f}")
  if flags.json:
    pathlib.Path(flags.json).write_text(json.dumps(results, indent=2) + "\n")
