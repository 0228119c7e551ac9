"""The train step both frameworks run, and what makes their figures comparable (the work and the devices).

`JaxStep` is `jaxcnn.train.train_step` (the training code path, with the training optimizer: SGD, momentum
0.9, coupled weight decay 5e-4, built by `jaxcnn.optim.create`) compiled for a synthetic batch already on
the device (`mode="step"`) or fed by the real input pipeline (`mode="end_to_end"`). Model FLOPs are 6 x the
forward multiply-adds per image (forward, input gradients and weight gradients), as MFU is usually defined;
XLA's own count for the compiled step is recorded beside it (on GPUs it leaves out the cuDNN convolutions).

Default inputs (`image_size` overrides the size, keeping the channels): LeNet-5, the MLP and the small CNN
28x28x1 (Fashion-MNIST), the CIFAR ResNets 32x32x3, the paper's AlexNet (one or two towers) 32x32x3 (its
small-input stem, the CIFAR-sized case of the experiments), every other model 224x224x3 (ImageNet),
torchvision's AlexNet layout `alexnet_owt` included.
"""

import ast
import functools
import itertools
import time

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
  from jaxcnn.models import resnet

  if model in _SMALL_INPUTS:
    return _SMALL_INPUTS[model]
  if model in ("alexnet", "alexnet_grouped") or (model.startswith("resnet") and int(model[6:]) in resnet.CIFAR_DEPTHS):
    return (32, 32, 3)
  return (224, 224, 3)


def input_shape(model: str, image_size: int) -> tuple[int, int, int]:
  shape = default_input(model)
  return (image_size, image_size, shape[2]) if image_size else shape


def peak_flops(device, precision: str) -> float | None:
  for name, peaks in PEAK_FLOPS:
    if name in device.device_kind:
      return peaks[precision]
  return None


def bench_config(
  model: str,
  batch_size: int,
  precision: str,
  parallelism: str,
  image_size: int,
  dataset: str,
  model_options: dict | None = None,
):
  """The training config the benchmark runs: the model's defaults with SGD, momentum 0.9, coupled wd 5e-4."""
  from jaxcnn.configs import default

  config = default.get_config()
  config.model, config.batch_size, config.compute_dtype, config.parallelism = model, batch_size, precision, parallelism
  config.dataset, config.image_size, config.schedule = dataset, image_size, "constant"
  config.synthetic.image_shape, config.validation_size = default_input(model), 0  # all of train is trained on
  config.optimizer, config.learning_rate, config.momentum, config.weight_decay = "sgd", 0.01, 0.9, 5e-4
  config.model_options.update(model_options or {})
  return config


def peak_memory(devices) -> int | None:
  """Largest peak bytes in use over the devices, or None where the device does not report it (CPU)."""
  peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in devices]
  return max(peaks) if peaks and None not in peaks else None


class JaxStep:
  """A compiled train step with its state and input; `run(steps)` times that many steps."""

  def __init__(self, config, mode: str):
    import jax
    import numpy as np

    from jaxcnn import compile_cache, data, models, optim, parallel, summary, train

    self.jax, self.batch_size = jax, config.batch_size
    self.strategy = parallel.strategy(config.parallelism)
    local_batch, _, per_device = parallel.batch_layout(config.batch_size)
    if mode == "step":
      self.image_shape = input_shape(config.model, config.image_size)
      rng = np.random.default_rng(0)
      batch = self.strategy.put_batch(
        {
          "image": rng.normal(size=(local_batch, *self.image_shape)).astype(np.float32),
          "label": rng.integers(0, 10, local_batch).astype(np.int32),
        }
      )
      self.batches = itertools.repeat(batch)
    else:
      pipeline = data.InputPipeline(config, data.load(config))
      self.image_shape = pipeline.image_shape
      epochs = itertools.chain.from_iterable(pipeline.train_batches(epoch) for epoch in itertools.count())
      self.batches = map(self.strategy.put_batch, epochs)
    self.model = models.create(config.model, num_classes=10, **config.model_options)
    totals = summary.totals(self.model, self.image_shape)
    self.params, self.macs = totals["params"], totals["macs"]
    state = train.create_train_state(config, self.model, self.image_shape, optim.create(config, steps_per_epoch=1000))
    self.state = self.strategy.put_state(state)
    step = self.strategy.compile(
      functools.partial(train.train_step, options=train.StepOptions.from_config(config)), donate_state=True
    )
    start = time.perf_counter()
    batch = next(self.batches)
    with compile_cache.watch() as compiled:
      self.step = step.lower(self.state, batch).compile()
    self.compile_seconds, self.compile_source = time.perf_counter() - start, compiled.describe()
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


def unequal_work(ours: dict, theirs: dict, mode: str) -> str | None:
  """Why a jaxcnn / PyTorch ratio would compare different work, or None when it compares the same work.

  `ours` and `theirs` carry each side's `params`, `macs` (forward multiply-adds per image), `devices` and
  `image_shape`; a ratio needs all four equal, and the same step: in `end_to_end` mode jaxcnn's figure
  includes its input pipeline, which the PyTorch side (synthetic batches) does not run.
  """
  if mode == "end_to_end":
    return "end_to_end: jaxcnn includes its input pipeline, PyTorch runs synthetic batches"
  for field, what in (
    ("macs", "multiply-adds"),
    ("params", "parameters"),
    ("devices", "devices"),
    ("image_shape", "input shape"),
  ):
    mine, other = (tuple(v) if isinstance(v, list) else v for v in (ours[field], theirs[field]))
    if mine != other:
      return f"unequal {what}: jaxcnn {ours[field]}, PyTorch {theirs[field]}"
  return None


def parse_options(items: list[str]) -> dict:
  """KEY=VALUE strings -> a dict, values as Python literals where they parse (True, 3, 0.5), else strings."""
  options = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise ValueError(f"expected KEY=VALUE, got {item!r}")
    try:
      options[key] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      options[key] = value
  return options
