"""One side of a benchmark in a process of its own: `Worker` starts it, `python -m jaxcnn.bench.worker SPEC_JSON`
runs it.

The controllers (`jaxcnn.bench` for train steps, `jaxcnn.bench.accuracy` for time to accuracy) start one
`Worker` per side, the one launcher of the bench's processes. The spec's `serve` names what the process runs
(`SERVERS`): a step worker (`serve_steps`) builds and compiles its side, runs the warm-up steps, writes one
JSON line `{"ready": {...}}` (or `{"error": "..."}`) and then answers each line `STEPS` on its stdin with
`{"seconds": ...}` until its stdin closes, idle in between; a time-to-accuracy worker
(`jaxcnn.bench.accuracy.train_until`) trains and writes `{"epoch": ..., "test_top1_accuracy": ...}` after
every epoch. Everything else the process prints goes to stderr, so the protocol's lines stay clean.

Both sides pin themselves to the same `threads` CPUs before their framework starts: XLA:CPU sizes its
thread pool by the CPUs the process may run on, PyTorch gets `torch.set_num_threads(threads)`.
"""

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time

# glibc's malloc settings of every timed process (both sides' workers and the self-check's plain loop): freed
# memory stays in the heap instead of going back to the OS. By default glibc hands PyTorch's freed activations
# back (heap trimming; fresh mmaps for large blocks) and every step page-faults them in again: LeNet-5 at batch
# 128 took ~2,100 minor page faults a step and ran ~40% slower in a fresh process than in one whose heap held
# other data (BUILD_NOTES "The bench"). jaxcnn's speed does not change with them.
ALLOCATOR_ENV = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}

# What a worker process runs, by the spec's "serve": module:function(spec, channel). Named, not imported, so
# that this module imports neither side (accuracy.py imports this one for `Worker`).
SERVERS = {"steps": "jaxcnn.bench.worker:serve_steps", "time_to_accuracy": "jaxcnn.bench.accuracy:train_until"}


class Worker:
  """A `python -m jaxcnn.bench.worker` process: receive() reads its next line (None at its end), run(steps)
  times steps in a step worker after `settle` seconds of quiet."""

  def __init__(self, spec: dict, env: dict | None = None, name: str | None = None):
    self.name = name or spec["side"]
    self.started = time.perf_counter()
    self.process = subprocess.Popen(
      [sys.executable, "-m", "jaxcnn.bench.worker", json.dumps(spec)],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      text=True,
      env={**os.environ, **ALLOCATOR_ENV, **(env or {})},
    )

  def receive(self, until_end: bool = False) -> dict | None:
    """The next JSON line; at the process's end None if `until_end`, else an error naming the worker."""
    line = self.process.stdout.readline()
    if line:
      return json.loads(line)
    status = self.process.wait()
    if until_end and status == 0:
      return None
    raise RuntimeError(f"the {self.name} worker exited with status {status} (its stderr is above)")

  def run(self, steps: int, settle: float) -> dict:
    time.sleep(settle)
    self.process.stdin.write(f"{steps}\n")
    self.process.stdin.flush()
    return self.receive()

  def close(self) -> None:
    self.process.stdin.close()
    self.process.wait(timeout=60)


def pin_threads(threads: int) -> list[int]:
  """Restricts this process to its first `threads` CPUs (0: all it may use); returns them."""
  cpus = sorted(os.sched_getaffinity(0))
  if threads > len(cpus):
    raise ValueError(f"--threads={threads} but this process may use {len(cpus)} CPUs")
  if threads:
    cpus = cpus[:threads]
    os.sched_setaffinity(0, cpus)
  return cpus


def torch_models():
  """jaxcnn.bench.torch_models (the PyTorch twins), or a ValueError saying how to install PyTorch."""
  if importlib.util.find_spec("torch") is None:
    raise ValueError("--compare=pytorch needs PyTorch: pip install 'jaxcnn[compare]'")
  from jaxcnn.bench import torch_models

  return torch_models


def select_devices(count: int) -> None:
  """Before the backends start: `count` host devices on a CPU, the first `count` GPUs on a GPU machine."""
  import jax

  jax.config.update("jax_num_cpu_devices", count)
  jax.config.update("jax_cuda_visible_devices", ",".join(map(str, range(count))))


def jax_side(spec: dict):
  """jaxcnn's compiled train step, and what the controller prints and checks about it."""
  from jaxcnn import compile_cache, fast_forms

  if spec["fast_forms"]:
    forms_line = fast_forms.enable(add_xla_flags=spec["fast_forms_xla_flags"])
  else:
    forms_line = fast_forms.disable()
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
    "description": f"jaxcnn, JAX {jax.__version__}; {forms_line}",
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
  twins = torch_models()
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
  module, _, function = SERVERS[spec.get("serve", "steps")].partition(":")
  getattr(importlib.import_module(module), function)(spec, channel)


if __name__ == "__main__":
  main(sys.argv)
