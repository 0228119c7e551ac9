"""Train-step throughput of the zoo's models, optionally side by side with PyTorch.

  python -m jaxcnn.bench --models=lenet5,resnet20 --batch_size=128 [--compare=pytorch] [--json=FILE]
      [--precision=float32|bfloat16] [--image_size=N] [--devices=N] [--mode=step|end_to_end]
      [--parallelism=pmap|shard_map] [--repeats=R] [--steps=S]

For each model: steady-state images/s of `jaxcnn.train.train_step` (the training code path, with the
training optimizer: SGD, momentum 0.9, coupled weight decay 5e-4, built by `jaxcnn.optim.create`), after
compilation; the compile time; the peak device memory where the device reports it; and the model FLOPs
utilisation where the device's peak is known: model FLOPs are 6 x the forward multiply-adds per image
(forward, input gradients and weight gradients), as MFU is usually defined. XLA's own count for the
compiled step is recorded beside it; on GPUs it leaves out the cuDNN convolutions, so it is not used. Each repeat times `--steps` steps (by default as many as take about `--seconds`, judged from the warm-up);
the table shows the median over `--repeats`.

`--mode=step` (default) feeds one synthetic batch already on the device, so it measures the step alone.
`--mode=end_to_end` feeds the real input pipeline (`jaxcnn.data.InputPipeline`: Fashion-MNIST from the
usual data directory, or `--dataset=synthetic`), host-to-device copies included.

Default inputs (`--image_size` overrides the size, keeping the channels): LeNet-5, the MLP and the small
CNN 28x28x1 (Fashion-MNIST), the CIFAR ResNets 32x32x3, the paper's AlexNet (one or two towers) 32x32x3
(its small-input stem, the CIFAR-sized case of the experiments), every other model 224x224x3 (ImageNet),
torchvision's AlexNet layout `alexnet_owt` included.

`--compare=pytorch` times the identical PyTorch model (experiments/benchmark/pytorch_models.py, loaded
by path from the repository; not part of the package) in the same process, alternating repeats with
jaxcnn's so both see the same machine load, and adds `pytorch_images_per_sec` and `ratio` (jaxcnn /
PyTorch) to each record.
"""

import dataclasses
import functools
import importlib.util
import itertools
import json
import math
import os
import pathlib
import statistics
import sys
import time

from absl import app, flags

from jaxcnn import xla_cpu

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["lenet5", "resnet20"], "Registered model names, comma-separated.")
flags.DEFINE_integer("batch_size", 128, "Global batch size (split over the devices).", lower_bound=1)
flags.DEFINE_enum("compare", None, ["pytorch"], "Also time the identical PyTorch model, side by side.")
flags.DEFINE_string("json", None, "Write the records as a JSON list to this file.")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"], "Compute dtype (params stay float32).")
flags.DEFINE_integer("image_size", 0, "Image height and width; 0 = the model's default input.", lower_bound=0)
flags.DEFINE_integer("devices", 0, "Devices to use (on a CPU: this many host devices sharing the cores); "
                     "0 = all.", lower_bound=0)
flags.DEFINE_enum("mode", "step", ["step", "end_to_end"], "step: synthetic batch on the device; end_to_end: the "
                  "real input pipeline feeds the step.")
flags.DEFINE_enum("dataset", "fashion_mnist", ["fashion_mnist", "synthetic"], "--mode=end_to_end's data.")
flags.DEFINE_enum("parallelism", "pmap", ["pmap", "shard_map"], "How the step runs over the devices.")
flags.DEFINE_integer("repeats", 5, "Timed repeats per model; the median is reported.", lower_bound=1)
flags.DEFINE_integer("steps", 0, "Train steps per timed repeat; 0 = as many as take about --seconds in jaxcnn.",
                     lower_bound=0)
flags.DEFINE_float("seconds", 2.0, "With --steps=0: the target duration of one jaxcnn repeat.")
flags.DEFINE_integer("warmup", 3, "Untimed steps after compilation.", lower_bound=0)
flags.DEFINE_bool("xla_cpu_tuning", True, "Add jaxcnn.xla_cpu's XLA flags (as training does); "
                  "--noxla_cpu_tuning measures XLA's defaults.")

PYTORCH_MODELS = pathlib.Path(__file__).resolve().parent.parent / "experiments" / "benchmark" / "pytorch_models.py"

# Per-device dense peak FLOP/s by compute dtype, from the vendors' data sheets (SXM parts; float32 is
# TF32 on the tensor cores, which XLA uses for float32 convolutions and matmuls by default on these GPUs).
# Matched by substring of `device.device_kind`, first match wins (PCIe before the SXM default).
PEAK_FLOPS = (
    ("H100 PCIe", {"bfloat16": 756e12, "float32": 378e12}),
    ("H100", {"bfloat16": 989e12, "float32": 495e12}),
    ("H200", {"bfloat16": 989e12, "float32": 495e12}),
    ("A100", {"bfloat16": 312e12, "float32": 156e12}),
)

_SMALL_INPUTS = {"lenet5": (28, 28, 1), "lenet5_1998": (28, 28, 1), "mlp": (28, 28, 1), "simple_cnn": (28, 28, 1)}


def default_input(model: str) -> tuple[int, int, int]:
  """The model's benchmark input (see the module docstring)."""
  if model in _SMALL_INPUTS:
    return _SMALL_INPUTS[model]
  if model in ("alexnet", "alexnet_grouped") or (model.startswith("resnet") and int(model[6:]) in _cifar_depths()):
    return (32, 32, 3)
  return (224, 224, 3)


def _cifar_depths():
  from jaxcnn.models import resnet

  return resnet.CIFAR_DEPTHS


def peak_flops(device, precision: str) -> float | None:
  for name, peaks in PEAK_FLOPS:
    if name in device.device_kind:
      return peaks[precision]
  return None


def bench_config(model: str, batch_size: int, precision: str, parallelism: str, image_size: int, dataset: str):
  """The training config the benchmark runs: the model's defaults with SGD, momentum 0.9, coupled wd 5e-4."""
  from jaxcnn.configs import default

  config = default.get_config()
  config.model, config.batch_size, config.compute_dtype, config.parallelism = model, batch_size, precision, parallelism
  config.dataset, config.image_size, config.schedule = dataset, image_size, "constant"
  config.synthetic.image_shape, config.validation_size = default_input(model), 0  # all of train is trained on
  config.optimizer, config.learning_rate, config.momentum, config.weight_decay = "sgd", 0.01, 0.9, 5e-4
  return config


@dataclasses.dataclass
class Record:
  model: str
  batch_size: int
  image_shape: tuple[int, int, int]
  precision: str
  mode: str
  parallelism: str
  devices: int
  device_kind: str
  params: int
  images_per_sec: float
  images_per_sec_runs: list[float]
  steps_per_run: int
  compile_seconds: float
  step_flops: float  # model FLOPs per device and step: 6 x forward multiply-adds x per-device batch
  xla_step_flops: float | None  # XLA's cost analysis of the compiled step (without cuDNN calls on GPUs)
  mfu: float | None
  peak_memory_bytes: int | None
  load_average: tuple[float, float] = ()  # 1-minute host load before and after: other users' work skews timings
  pytorch: str | None = None
  pytorch_params: int | None = None
  pytorch_images_per_sec: float | None = None
  pytorch_images_per_sec_runs: list[float] | None = None
  ratio: float | None = None


class JaxStep:
  """A compiled train step with its state and input; `run(steps)` times that many steps."""

  def __init__(self, config, mode: str):
    import jax
    import numpy as np

    from jaxcnn import data, models, optim, parallel, summary, train

    self.jax, self.batch_size = jax, config.batch_size
    self.strategy = parallel.strategy(config.parallelism)
    local_batch = parallel.batch_layout(config.batch_size)[0]
    if mode == "step":
      shape = default_input(config.model)
      self.image_shape = (config.image_size, config.image_size, shape[2]) if config.image_size else shape
      rng = np.random.default_rng(0)
      batch = self.strategy.put_batch({
          "image": rng.normal(size=(local_batch, *self.image_shape)).astype(np.float32),
          "label": rng.integers(0, 10, local_batch).astype(np.int32)})
      self.batches = itertools.repeat(batch)
    else:
      pipeline = data.InputPipeline(config, data.load(config))
      self.image_shape = pipeline.image_shape
      epochs = itertools.chain.from_iterable(pipeline.train_batches(epoch) for epoch in itertools.count())
      self.batches = map(self.strategy.put_batch, epochs)
    self.model = models.create(config.model, num_classes=10)
    totals = summary.totals(self.model, self.image_shape)
    self.params = totals["params"]
    state = train.create_train_state(config, self.model, self.image_shape, optim.create(config, steps_per_epoch=1000))
    self.state = self.strategy.put_state(state)
    step = self.strategy.compile(functools.partial(train.train_step, options=train.StepOptions.from_config(config)),
                                 donate_state=True)
    start = time.perf_counter()
    batch = next(self.batches)
    self.step = step.lower(self.state, batch).compile()
    self.compile_seconds = time.perf_counter() - start
    if mode == "step":  # on the device in the step's own layout, so no step pays a host-to-device copy
      self.batches = itertools.repeat(jax.device_put(batch, self.step.input_shardings[0][1]))
    # Forward multiply-adds x 2 FLOPs x 3 (forward, input and weight gradients), per device.
    self.step_flops = 6.0 * totals["macs"] * per_device
    cost = self.step.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # a list of one dict on older JAX
    self.xla_step_flops = float(cost["flops"]) if cost and cost.get("flops", 0) > 0 else None

  def run(self, steps: int) -> float:
    """Seconds for `steps` train steps, the device drained before and after."""
    self.jax.block_until_ready(self.state)
    start = time.perf_counter()
    for _ in range(steps):
      self.state, sums = self.step(self.state, next(self.batches))
    self.jax.block_until_ready((self.state, sums))
    return time.perf_counter() - start


def load_pytorch_models():
  """experiments/benchmark/pytorch_models.py as a module, or a clear exit when it cannot be used."""
  if importlib.util.find_spec("torch") is None:
    sys.exit("jaxcnn.bench: --compare=pytorch needs PyTorch (pip install torch); it is not installed")
  if not PYTORCH_MODELS.is_file():
    sys.exit(f"jaxcnn.bench: --compare=pytorch needs {PYTORCH_MODELS} (a checkout of the repository, not an "
             f"installed package)")
  spec = importlib.util.spec_from_file_location("jaxcnn_pytorch_models", PYTORCH_MODELS)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _rates(runner, batch_size: int, steps: int) -> float:
  return steps * batch_size / runner.run(steps)


def peak_memory(devices) -> int | None:
  """Largest peak bytes in use over the devices, or None where the device does not report it (CPU)."""
  peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in devices]
  return max(peaks) if peaks and None not in peaks else None


def measure(model: str, torch_models=None) -> Record:
  import jax

  config = bench_config(model, FLAGS.batch_size, FLAGS.precision, FLAGS.parallelism, FLAGS.image_size,
                        FLAGS.dataset if FLAGS.mode == "end_to_end" else "synthetic")
  load_before = os.getloadavg()[0]
  ours = JaxStep(config, FLAGS.mode)
  image_shape = ours.image_shape
  theirs = None
  if torch_models is not None and model in torch_models.MODELS:
    theirs = torch_models.TrainStep(model, 10, image_shape, FLAGS.batch_size, FLAGS.precision,
                                    config.momentum, config.weight_decay, config.learning_rate)
    if theirs.params != ours.params:
      raise ValueError(f"{model}: the PyTorch twin has {theirs.params:,} parameters, jaxcnn's {ours.params:,}")
    theirs.run(FLAGS.warmup)
  warmup_seconds = ours.run(max(FLAGS.warmup, 1))
  steps = FLAGS.steps or max(2, math.ceil(FLAGS.seconds / (warmup_seconds / max(FLAGS.warmup, 1))))
  runs, torch_runs = [], []
  for _ in range(FLAGS.repeats):  # alternating, so both see the same load on a shared machine
    runs.append(_rates(ours, FLAGS.batch_size, steps))
    if theirs is not None:
      torch_runs.append(_rates(theirs, FLAGS.batch_size, steps))
  load_after = os.getloadavg()[0]
  devices = jax.local_devices()
  rate = statistics.median(runs)
  peak = peak_flops(devices[0], FLAGS.precision)
  mfu = ours.step_flops * rate / FLAGS.batch_size / peak if peak else None  # per device: FLOPs/s over peak
  record = Record(model, FLAGS.batch_size, image_shape, FLAGS.precision, FLAGS.mode, FLAGS.parallelism,
                  jax.device_count(), devices[0].device_kind, ours.params, rate, runs, steps, ours.compile_seconds,
                  ours.step_flops, ours.xla_step_flops, mfu, peak_memory(devices), (load_before, load_after))
  if theirs is not None:
    torch_rate = statistics.median(torch_runs)
    record = dataclasses.replace(record, pytorch=theirs.description, pytorch_params=theirs.params,
                                 pytorch_images_per_sec=torch_rate, pytorch_images_per_sec_runs=torch_runs,
                                 ratio=rate / torch_rate)
  return record


def _or_na(value, fmt: str) -> str:
  return "n/a" if value is None else format(value, fmt)


def table(records: list[Record]) -> str:
  header = (f"{'model':<14} {'input':<10} {'batch':>5} {'params':>12} {'img/s':>9} {'compile s':>9} "
            f"{'peak mem MiB':>12} {'MFU':>6} {'PyTorch img/s':>13} {'ratio':>6} {'load':>9}")
  lines = [header, "-" * len(header)]
  for r in records:
    memory = None if r.peak_memory_bytes is None else r.peak_memory_bytes / 2**20
    lines.append(f"{r.model:<14} {'x'.join(map(str, r.image_shape)):<10} {r.batch_size:>5} {r.params:>12,} "
                 f"{r.images_per_sec:>9.1f} {r.compile_seconds:>9.2f} {_or_na(memory, '.0f'):>12} "
                 f"{_or_na(r.mfu, '.1%'):>6} {_or_na(r.pytorch_images_per_sec, '.1f'):>13} "
                 f"{_or_na(r.ratio, '.2f'):>6} {r.load_average[0]:>4.1f}-{r.load_average[1]:<4.1f}")
  return "\n".join(lines)


def _select_devices(count: int) -> None:
  """Before the backends start: `count` host devices on a CPU, the first `count` GPUs on a GPU machine."""
  import jax

  jax.config.update("jax_num_cpu_devices", count)
  jax.config.update("jax_cuda_visible_devices", ",".join(map(str, range(count))))


def main(argv):
  del argv
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  if FLAGS.xla_cpu_tuning:
    xla_cpu.apply()
  if FLAGS.compare == "pytorch":
    # JAX takes 75% of a GPU's memory up front by default, which leaves PyTorch, in the same process,
    # too little for VGG-16 at batch 256; 45% leaves each framework about half the card.
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
  if FLAGS.devices:
    _select_devices(FLAGS.devices)
  import jax

  from jaxcnn import models

  unknown = [m for m in FLAGS.models if m not in models.names()]
  if unknown:
    sys.exit(f"jaxcnn.bench: unknown model(s) {', '.join(unknown)}; known: {', '.join(models.names())}")
  torch_models = load_pytorch_models() if FLAGS.compare == "pytorch" else None
  print(f"jaxcnn.bench: {jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"JAX {jax.__version__}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, {FLAGS.mode} mode, {FLAGS.precision}, {FLAGS.parallelism}, median of "
        f"{FLAGS.repeats} repeats", flush=True)
  records = []
  try:
    for model in FLAGS.models:
      records.append(measure(model, torch_models))
      r = records[-1]
      if r.pytorch:
        print(f"  {model}: {r.params:,} parameters in jaxcnn and {r.pytorch_params:,} in {r.pytorch}", flush=True)
      elif torch_models is not None:
        print(f"  {model}: no PyTorch twin; compared with nothing", flush=True)
  finally:  # a model that fails (out of memory, say) keeps the ones measured before it
    print(table(records))
    if FLAGS.json:
      pathlib.Path(FLAGS.json).write_text(json.dumps([dataclasses.asdict(r) for r in records], indent=2) + "\n")


if __name__ == "__main__":
  app.run(main)
