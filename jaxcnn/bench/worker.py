"""One side of a benchmark in a process of its own: `python -m jaxcnn.bench.worker SPEC_JSON`.

The controller (`jaxcnn.bench`) starts one worker per side. A step worker builds and compiles its side,
runs the warm-up steps, writes one JSON line `{"ready": {...}}` (or `{"error": "..."}`) and then answers
each line `STEPS` on its stdin with `{"seconds": ...}` until its stdin closes, idle in between. A
time-to-accuracy worker trains and writes `{"epoch": ..., "test_top1_accuracy": ...}` after every epoch.
Everything else the process prints goes to stderr, so the protocol's lines stay clean.

Both sides pin themselves to the same `threads` CPUs before their framework starts: XLA:CPU sizes its
thread pool by the CPUs the process may run on, PyTorch gets `torch.set_num_threads(threads)`.
"""

import importlib.util
import json
import os
import pathlib
import sys

PYTORCH_MODELS = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "benchmark" / "pytorch_models.py"


def pin_threads(threads: int) -> list[int]:
  """Restricts this process to its first `threads` CPUs (0: all it may use); returns them."""
  cpus = sorted(os.sched_getaffinity(0))
  if threads > len(cpus):
    raise ValueError(f"--threads={threads} but this process may use {len(cpus)} CPUs")
  if threads:
    cpus = cpus[:threads]
    os.sched_setaffinity(0, cpus)
  return cpus


def load_pytorch_models():
  """experiments/benchmark/pytorch_models.py as a module (it is not part of the installed package)."""
  if importlib.util.find_spec("torch") is None:
    raise ValueError("--compare=pytorch needs PyTorch (pip install torch); it is not installed")
  if not PYTORCH_MODELS.is_file():
    raise ValueError(
      f"--compare=pytorch needs {PYTORCH_MODELS} (a checkout of the repository, not an installed package)"
    )
  spec = importlib.util.spec_from_file_location("jaxcnn_pytorch_models", PYTORCH_MODELS)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def select_devices(count: int) -> None:
  """Before the backends start: `count` host devices on a CPU, the first `count` GPUs on a GPU machine."""
  import jax

  jax.config.update("jax_num_cpu_devices", count)
  jax.config.update("jax_cuda_visible_devices", ",".join(map(str, range(count))))


def jax_side(spec: dict):
  """jaxcnn's compiled train step, and what the controller prints and checks about it."""
  from jaxcnn import compile_cache, kernels

  kernels_line = kernels.enable(add_xla_flags=spec["kernels_xla_flags"]) if spec["kernels"] else kernels.disable()
  if spec["devices"]:
    select_devices(spec["devices"])
  compile_cache.enable(spec["compilation_cache_dir"])
  import jax

  if not spec["tf32"]:
    jax.config.update("jax_default_matmul_precision", "highest")
  from jaxcnn.bench import step

  config = step.bench_config(
    spec["model"],
    spec["batch_size"],
    spec["precision"],
    spec["parallelism"],
    spec["image_size"],
    spec["dataset"],
    spec["model_options"],
  )
  runner = step.JaxStep(config, spec["mode"])
  devices = jax.local_devices()
  peak = step.peak_flops(devices[0], spec["precision"])
  info = {
    "description": f"jaxcnn, JAX {jax.__version__}; {kernels_line}",
    "params": runner.params,
    "macs": runner.macs,
    "devices": jax.device_count(),
    "device_kind": devices[0].device_kind,
    "backend": jax.default_backend(),
    "image_shape": runner.image_shape,
    "compile_seconds": runner.compile_seconds,
    "compile_source": runner.compile_source,
    "step_flops": runner.step_flops,
    "xla_step_flops": runner.xla_step_flops,
    "peak_flops": peak,
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }
  return runner, info, lambda: step.peak_memory(devices)


def pytorch_side(spec: dict):
  """The PyTorch twin's train step (eager or compiled), and what the controller prints and checks about it."""
  twins = load_pytorch_models()
  import torch

  torch.set_num_threads(len(os.sched_getaffinity(0)))
  runner = twins.TrainStep(
    spec["model"],
    10,
    spec["image_shape"],
    spec["batch_size"],
    spec["precision"],
    0.9,
    5e-4,
    0.01,
    compile=spec["side"] == "pytorch_compiled",
    tf32=spec["tf32"],
  )
  info = {
    "description": runner.description,
    "params": runner.params,
    "macs": runner.macs,
    "devices": 1,
    "image_shape": spec["image_shape"],
  }
  return runner, info, runner.peak_memory_bytes


def serve_steps(spec: dict, channel) -> None:
  build = jax_side if spec["side"] == "jaxcnn" else pytorch_side
  try:
    runner, info, peak_memory = build(spec)
    info["warmup_seconds_per_step"] = runner.run(max(spec["warmup"], 1)) / max(spec["warmup"], 1)
  except Exception as e:  # noqa: BLE001 - a side that cannot run (no twin, torch.compile without a compiler) is reported
    channel.write(json.dumps({"error": f"{type(e).__name__}: {' '.join(str(e).split())}"[:500]}) + "\n")
    return
  channel.write(json.dumps({"ready": info}) + "\n")
  for line in sys.stdin:
    seconds = runner.run(int(line))
    channel.write(json.dumps({"seconds": seconds, "peak_memory_bytes": peak_memory()}) + "\n")


def main(argv: list[str]) -> None:
  spec = json.loads(argv[1])
  channel = os.fdopen(os.dup(1), "w", buffering=1)  # the protocol's stdout ...
  os.dup2(2, 1)  # ... and everything else to stderr
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  spec["cpus"] = pin_threads(spec["threads"])
  if spec["side"].startswith("time_to_accuracy"):
    from jaxcnn.bench import accuracy

    accuracy.train_until(spec, channel)
  else:
    serve_steps(spec, channel)


if __name__ == "__main__":
  main(sys.argv)
