"""Train-step throughput of the zoo's models, optionally side by side with PyTorch; time to a target accuracy.

  python -m jaxcnn.bench --models=lenet5,resnet20 --batch_size=128 [--compare=pytorch] [--json=FILE]
      [--precision=float32|bfloat16] [--image_size=N] [--devices=N] [--mode=step|end_to_end]
      [--parallelism=pmap|shard_map] [--repeats=R] [--steps=S] [--threads=T] [--model_options=K=V,...]
      [--nopytorch_compile] [--notf32]
  python -m jaxcnn.bench --mode=time_to_accuracy --config=lenet5 [--config.FIELD=VALUE ...] --target=0.91
      [--compare=pytorch] [--twin_recipe=same|plain|onecycle] [--twin.FIELD=VALUE ...]

For each model: steady-state images/s of jaxcnn's train step (`jaxcnn.bench.step`), after compilation; the
compile time (and whether the persistent compilation cache served it); the peak device memory where the
device reports it; the model FLOPs utilisation where the device's peak is known. Each repeat times `--steps`
steps (by default as many as take about `--seconds` in jaxcnn, judged from the warm-up); the table shows the
median over `--repeats`.

The protocol, the same for every model and printed above the table:
- Each framework runs in its own process (`jaxcnn.bench.worker`), built, compiled and warmed up one after
  the other, then timed in turns with the other process idle (blocked on a pipe; half a second of quiet
  before each turn, longer than XLA's and OpenMP's spin-waits): no framework's threads compete with the
  other's. The order alternates, ABBA: jaxcnn first in odd repeats, last in even ones.
- Both processes may run on the same `--threads` CPUs (0: every CPU this process may use).
- Every timed process (both sides and the self-check below) runs with glibc's malloc keeping freed memory
  (`worker.ALLOCATOR_ENV`): by default a fresh PyTorch process gives its activations back to the OS after each
  step and page-faults them in again at the next (~2,100 faults a step for LeNet-5 at batch 128, ~40% of its
  speed), which is what made the bench's PyTorch column slower than a PyTorch script before 2026-12-04.
- `--compare=pytorch` times the identical PyTorch model (`jaxcnn.bench.torch_models`; needs
  `pip install jaxcnn[compare]`) in channels_last memory format, eager and
  `torch.compile`d (`--nopytorch_compile` leaves the compiled column out; when it cannot compile, the
  column says why), with `cudnn.benchmark` and bfloat16 autocast (`--precision=bfloat16`) on a GPU, and
  TF32 in float32 matmuls allowed on both sides (XLA's GPU default) or, with `--notf32`, on neither.
- A ratio (jaxcnn / PyTorch images/s) is printed only for equal work: the same forward multiply-adds per
  image, parameters, input shape and device count (the PyTorch side runs on one device: compare with
  `--devices=1`), and the same step: `--mode=end_to_end` feeds jaxcnn's real input pipeline
  (`jaxcnn.data.InputPipeline`; Fashion-MNIST or `--dataset=synthetic`) while PyTorch runs synthetic
  batches, so it prints no ratio. The reason stands where the ratio would.
- The bench checks itself (`--compare=pytorch`, float32, step mode): after the protocol's repeats it runs the
  same twin in a plain PyTorch loop in a fresh process of its own (`jaxcnn.bench.torch_models.plain_loop`:
  the same CPUs and threads, the same steps and repeats back to back, no worker protocol) and prints both
  figures. When the bench's PyTorch eager figure and the plain loop's differ by more than
  `--self_check_tolerance` (10%), the bench is at fault, not PyTorch: a line `BENCH FAULT: ...` says so and
  the model gets no ratio (the reason stands under the table), and the process exits with status 3.

`--mode=time_to_accuracy` trains the named `--config` (ml_collections' config flag, as `jaxcnn.main`'s: its
`--config.FIELD=VALUE` overrides apply) with the project's training loop until its test accuracy reaches
`--target` (checked after every epoch) and reports the wall time from process start; with
`--compare=pytorch`, then the PyTorch twin under the same recipe or a plain or one-cycle loop's
(`--twin_recipe=plain|onecycle`), one after the other, in alternating order over `--tta_repeats` rounds;
`--jaxcnn_side=job` times the real job, train then eval, as README command 1 runs it (`jaxcnn.bench.accuracy`).
"""

import dataclasses
import json
import math
import os
import pathlib
import statistics
import subprocess
import sys

from absl import app, flags
from ml_collections import config_flags

from jaxcnn import configs
from jaxcnn.bench import step, worker
from jaxcnn.bench.report import Record, table
from jaxcnn.configs import default

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["lenet5", "resnet20"], "Registered model names, comma-separated.")
flags.DEFINE_integer("batch_size", 128, "Global batch size (split over the devices).", lower_bound=1)
flags.DEFINE_enum("compare", None, ["pytorch"], "Also time the identical PyTorch model, side by side.")
flags.DEFINE_string("json", None, "Write the records as a JSON list to this file.")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"], "Compute dtype (params stay float32).")
flags.DEFINE_integer("image_size", 0, "Image height and width; 0 = the model's default input.", lower_bound=0)
flags.DEFINE_integer(
  "devices", 0, "Devices to use (on a CPU: this many host devices sharing the cores); 0 = all.", lower_bound=0
)
flags.DEFINE_enum(
  "mode",
  "step",
  ["step", "end_to_end", "time_to_accuracy"],
  "step: synthetic batch on the "
  "device; end_to_end: the real input pipeline feeds the step; time_to_accuracy: see --config.",
)
flags.DEFINE_enum("dataset", "fashion_mnist", ["fashion_mnist", "synthetic"], "--mode=end_to_end's data.")
flags.DEFINE_enum("parallelism", "pmap", ["pmap", "shard_map"], "How the step runs over the devices.")
flags.DEFINE_integer("repeats", 5, "Timed repeats per model; the median is reported.", lower_bound=1)
flags.DEFINE_integer(
  "steps", 0, "Train steps per timed repeat; 0 = as many as take about --seconds in jaxcnn.", lower_bound=0
)
flags.DEFINE_float("seconds", 2.0, "With --steps=0: the target duration of one jaxcnn repeat.")
flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.", lower_bound=0)
flags.DEFINE_integer("threads", 0, "CPUs each side may run on (both the same); 0 = all.", lower_bound=0)
flags.DEFINE_list("model_options", [], "Model builder options as KEY=VALUE (e.g. stride_in_3x3=True).")
flags.DEFINE_bool("pytorch_compile", True, "With --compare=pytorch: a torch.compile column beside eager.")
flags.DEFINE_bool("tf32", True, "float32 on a GPU: TF32 matmuls and convolutions on both sides, else on neither.")
flags.DEFINE_bool(
  "fast_forms",
  True,
  "jaxcnn.fast_forms' faster layer forms and XLA flags, as training uses them; "
  "--nofast_forms measures the plain layers with XLA's defaults.",
)
flags.DEFINE_bool(
  "fast_forms_xla_flags",
  True,
  "With --fast_forms: add the fast forms' XLA flags for this jaxlib; "
  "--nofast_forms_xla_flags keeps XLA_FLAGS as given (A/B runs of single flags).",
)
# Their earlier names: scripts that say --nokernels or --nokernels_xla_flags keep working.
flags.DEFINE_alias("kernels", "fast_forms")
flags.DEFINE_alias("kernels_xla_flags", "fast_forms_xla_flags")
flags.DEFINE_string(
  "compilation_cache_dir", None, "JAX's persistent compilation cache (see jaxcnn.compile_cache); empty = off."
)
_CONFIG = configs.define_flag("lenet5", help_text="--mode=time_to_accuracy: the experiment or config file to train.")
flags.DEFINE_float("target", 0.91, "--mode=time_to_accuracy: the test top-1 accuracy to reach.")
flags.DEFINE_enum(
  "twin_recipe",
  "same",
  ["same", "plain", "onecycle"],
  "--mode=time_to_accuracy --compare=pytorch: the PyTorch side trains under the config's recipe (same), as a "
  "plain loop (plain: constant lr 0.05, batch 128, every training image) or as a one-cycle loop (onecycle: "
  "Nesterov, OneCycleLR's shape peaking at 0.1, 12 epochs); see jaxcnn.bench.accuracy.",
)
try:  # ml_collections applies a config dict's --twin.FIELD overrides as it defines the flag
  _TWIN = config_flags.DEFINE_config_dict(
    "twin",
    default.get_config(),
    "--mode=time_to_accuracy --compare=pytorch: --twin.FIELD=VALUE changes that field of the PyTorch side's "
    "recipe only (on top of --twin_recipe); the fields are the config's.",
  )
except (KeyError, AttributeError, TypeError, ValueError) as e:
  sys.exit(f"jaxcnn.bench: error: --twin: {' '.join(str(e).split())}")
flags.DEFINE_float(
  "self_check_tolerance",
  0.10,
  "--compare=pytorch: the largest relative difference between the bench's PyTorch eager figure and the same "
  "twin's plain loop before the bench reports itself at fault.",
)
flags.DEFINE_enum(
  "jaxcnn_side",
  "run",
  ["run", "job"],
  "--mode=time_to_accuracy: time jaxcnn's Run in one process (run), or the real job, train then eval, as "
  "launch/quickstart.sh runs it (job).",
)
flags.DEFINE_integer(
  "tta_repeats", 1, "--mode=time_to_accuracy: rounds, the order of the sides alternating.", lower_bound=1
)


# Half a second of quiet before each timed turn: longer than XLA's and OpenMP's spin-waits after work.
SETTLE_SECONDS = 0.5
SIDES = {"jaxcnn": "jaxcnn", "pytorch": "PyTorch eager", "pytorch_compiled": "PyTorch compiled"}


def worker_spec(model: str, side: str, image_shape=None) -> dict:
  return {
    "side": side,
    "model": model,
    "batch_size": FLAGS.batch_size,
    "precision": FLAGS.precision,
    "mode": FLAGS.mode,
    "parallelism": FLAGS.parallelism,
    "image_size": FLAGS.image_size,
    "dataset": FLAGS.dataset if FLAGS.mode == "end_to_end" else "synthetic",
    "model_options": step.parse_options(FLAGS.model_options),
    "devices": FLAGS.devices,
    "threads": FLAGS.threads,
    "warmup": FLAGS.warmup,
    "tf32": FLAGS.tf32,
    "fast_forms": FLAGS.fast_forms,
    "fast_forms_xla_flags": FLAGS.fast_forms_xla_flags,
    "compilation_cache_dir": FLAGS.compilation_cache_dir,
    "image_shape": image_shape,
    "serve": "steps",
  }


def start_sides(model: str) -> tuple[dict, dict]:
  """The workers of every side, each built and warmed up before the next starts: {side: Worker}, {side: info}."""
  # JAX takes 75% of a GPU's memory up front by default, which leaves PyTorch too little for VGG-16 at batch
  # 256; 45% leaves each framework about half the card.
  jax_env = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.45"} if FLAGS.compare else {}
  workers, infos, errors = {}, {}, {}
  sides = ["jaxcnn"] + (["pytorch"] + (["pytorch_compiled"] if FLAGS.pytorch_compile else []) if FLAGS.compare else [])
  try:
    for side in sides:
      image_shape = infos["jaxcnn"]["image_shape"] if side != "jaxcnn" else None
      process = worker.Worker(worker_spec(model, side, image_shape), jax_env if side == "jaxcnn" else None, SIDES[side])
      message = process.receive()
      if "error" in message:
        process.close()
        if side == "jaxcnn":
          raise RuntimeError(f"{model}: jaxcnn's step failed: {message['error']}")
        errors[side] = message["error"]
        continue
      workers[side], infos[side] = process, message["ready"]
  except BaseException:
    for process in workers.values():
      process.close()
    raise
  return workers, infos | {"errors": errors}


def measure(model: str) -> Record:
  """One model's row: both sides built and warmed up, timed in ABBA turns, compared where the work is equal."""
  load_before = os.getloadavg()[0]
  workers, infos = start_sides(model)
  ours = infos["jaxcnn"]
  try:
    steps = FLAGS.steps or max(2, math.ceil(FLAGS.seconds / ours["warmup_seconds_per_step"]))
    runs, peak = timed_turns(workers, steps)
  finally:
    for process in workers.values():
      process.close()
  record = jaxcnn_record(model, ours, runs["jaxcnn"], steps, peak, load_before)
  if "pytorch" in workers:
    record = with_pytorch(record, infos, runs)
  if "pytorch" in workers and FLAGS.precision == "float32" and FLAGS.mode == "step":
    record = self_check(record, steps)
  if FLAGS.compare and "pytorch" not in workers:
    record.no_ratio_because = f"PyTorch eager failed: {infos['errors']['pytorch']}"
  record.pytorch_compiled_error = infos["errors"].get("pytorch_compiled")
  return record


def timed_turns(workers: dict, steps: int) -> tuple[dict[str, list[float]], int | None]:
  """({side: images/s of each repeat}, jaxcnn's peak memory): `steps` steps a turn, each side in turn with the
  others idle, the order reversed every other repeat (ABBA)."""
  order = list(workers)
  runs, peak = {side: [] for side in order}, None
  for repeat in range(FLAGS.repeats):
    for side in order if repeat % 2 == 0 else order[::-1]:
      result = workers[side].run(steps, SETTLE_SECONDS)
      runs[side].append(steps * FLAGS.batch_size / result["seconds"])
      peak = result["peak_memory_bytes"] if side == "jaxcnn" else peak
  return runs, peak


def jaxcnn_record(model: str, ours: dict, runs: list[float], steps: int, peak, load_before: float) -> Record:
  """The row's jaxcnn side: the median rate, its model FLOPs utilisation where the device's peak is known."""
  rate = statistics.median(runs)
  mfu = ours["step_flops"] * rate / FLAGS.batch_size / ours["peak_flops"] if ours["peak_flops"] else None
  return Record(
    model,
    FLAGS.batch_size,
    tuple(ours["image_shape"]),
    FLAGS.precision,
    FLAGS.mode,
    FLAGS.parallelism,
    ours["devices"],
    ours["device_kind"],
    ours["params"],
    ours["macs"],
    rate,
    runs,
    steps,
    ours["compile_seconds"],
    ours["compile_source"],
    ours["step_flops"],
    ours["xla_step_flops"],
    mfu,
    peak,
    (load_before, os.getloadavg()[0]),
  )


def with_pytorch(record: Record, infos: dict, runs: dict[str, list[float]]) -> Record:
  """The row with PyTorch's eager (and compiled) columns; the ratios only where both sides did the same work."""
  theirs = infos["pytorch"]
  reason = step.unequal_work(infos["jaxcnn"], theirs, FLAGS.mode)
  eager = statistics.median(runs["pytorch"])
  record = dataclasses.replace(
    record,
    pytorch=theirs["description"],
    pytorch_params=theirs["params"],
    pytorch_macs=theirs["macs"],
    pytorch_images_per_sec=eager,
    pytorch_images_per_sec_runs=runs["pytorch"],
    no_ratio_because=reason,
    ratio=None if reason else record.images_per_sec / eager,
  )
  if "pytorch_compiled" in runs:
    compiled = statistics.median(runs["pytorch_compiled"])
    record = dataclasses.replace(
      record,
      pytorch_compiled_images_per_sec=compiled,
      pytorch_compiled_images_per_sec_runs=runs["pytorch_compiled"],
      compiled_ratio=None if reason else record.images_per_sec / compiled,
    )
  return record


def self_check(record: Record, steps: int) -> Record:
  """The same twin in a plain PyTorch loop, in a process of its own (`torch_models.plain_loop`), started after
  the workers have exited; a bench figure more than --self_check_tolerance off it is the bench's fault."""
  spec = {
    "model": record.model,
    "image_shape": list(record.image_shape),
    "batch_size": FLAGS.batch_size,
    "steps": steps,
    "repeats": FLAGS.repeats,
    "warmup": FLAGS.warmup,
    "cpus": sorted(os.sched_getaffinity(0))[: FLAGS.threads or None],
  }
  result = subprocess.run(
    [sys.executable, "-m", "jaxcnn.bench.torch_models", json.dumps(spec)],
    stdout=subprocess.PIPE,
    text=True,
    env={**os.environ, **worker.ALLOCATOR_ENV},
  )
  if result.returncode:
    raise RuntimeError(f"{record.model}: the plain PyTorch loop exited with status {result.returncode}")
  runs = json.loads(result.stdout.splitlines()[-1])["images_per_sec_runs"]
  plain, bench = statistics.median(runs), record.pytorch_images_per_sec
  difference = bench / plain - 1
  print(
    f"  {record.model}: self-check: PyTorch eager {bench:,.0f} img/s in the bench, {plain:,.0f} in a plain loop "
    f"of the same twin ({difference:+.1%})",
    flush=True,
  )
  record = dataclasses.replace(record, pytorch_plain_images_per_sec=plain, pytorch_plain_images_per_sec_runs=runs)
  if abs(difference) > FLAGS.self_check_tolerance:
    record.bench_fault = (
      f"BENCH FAULT: its PyTorch eager figure ({bench:,.0f} img/s) is {difference:+.1%} off a plain loop of the "
      f"same twin ({plain:,.0f} img/s), beyond {FLAGS.self_check_tolerance:.0%}: the bench, not PyTorch, is "
      f"measured; no ratio"
    )
    print(record.bench_fault, flush=True)
    record.no_ratio_because, record.ratio, record.compiled_ratio = record.bench_fault, None, None
  return record


def protocol_line() -> str:
  pytorch = ""
  if FLAGS.compare:
    pytorch = (
      f"; PyTorch eager{' and torch.compile' if FLAGS.pytorch_compile else ''}, channels_last, "
      f"cudnn.benchmark and bf16 autocast on a GPU"
    )
  threads = FLAGS.threads or len(os.sched_getaffinity(0))
  return (
    f"protocol: each framework in its own process, the other idle, ABBA order over {FLAGS.repeats} repeats "
    f"(median); {threads} CPU threads each; float32 TF32 on a GPU: {'both' if FLAGS.tf32 else 'neither'}"
    f"{pytorch}; glibc malloc keeps freed memory (trim 1 GiB, mmap 32 MiB) in every timed process; ratios only "
    f"for equal multiply-adds, parameters, input and devices"
  )


def run_step_benchmark() -> None:
  from jaxcnn import models

  unknown = [m for m in FLAGS.models if m not in models.names()]
  if unknown:
    sys.exit(f"jaxcnn.bench: unknown model(s) {', '.join(unknown)}; known: {', '.join(models.names())}")
  print(protocol_line(), flush=True)
  records = []
  try:
    for model in FLAGS.models:
      records.append(measure(model))
      r = records[-1]
      if r.pytorch:
        print(
          f"  {model}: {r.params:,} parameters and {r.macs:,} multiply-adds in jaxcnn, {r.pytorch_params:,} and "
          f"{r.pytorch_macs:,} in {r.pytorch}",
          flush=True,
        )
      elif FLAGS.compare:
        print(f"  {model}: compared with nothing: {r.no_ratio_because}", flush=True)
  finally:  # a model that fails (out of memory, say) keeps the ones measured before it
    if records:
      r = records[0]
      print(f"jaxcnn.bench: {r.devices} x {r.device_kind}, {r.mode} mode, {r.precision}, {r.parallelism}")
    print(table(records))
    if FLAGS.json:
      pathlib.Path(FLAGS.json).write_text(json.dumps([dataclasses.asdict(r) for r in records], indent=2) + "\n")
  if any(r.bench_fault for r in records):
    sys.exit(3)


def main(argv):
  del argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if FLAGS.threads > len(os.sched_getaffinity(0)):
    sys.exit(
      f"jaxcnn.bench: error: --threads={FLAGS.threads} but this process may use {len(os.sched_getaffinity(0))} CPUs"
    )
  try:
    if FLAGS.mode == "time_to_accuracy":
      from jaxcnn.bench import accuracy

      accuracy.main(
        FLAGS,
        FLAGS["config"].parser.typed,
        config_flags.get_override_values(FLAGS["config"]),
        config_flags.get_override_values(FLAGS["twin"]),
      )
    else:
      step.parse_options(FLAGS.model_options)
      run_step_benchmark()
  except (ValueError, RuntimeError) as e:
    sys.exit(f"jaxcnn.bench: error: {' '.join(str(e).split())}")


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, with a flag or config-override error (--config.FIELD, --twin.FIELD) on one line."""
  try:
    return FLAGS(argv)
  except (flags.Error, KeyError, TypeError, ValueError, AttributeError) as e:
    sys.exit(f"jaxcnn.bench: error: {' '.join(str(e).split())}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
