"""Convolution weight gradients by oneDNN through an XLA FFI custom call, against XLA:CPU's own.

XLA:CPU computes a convolution's weight gradient as a convolution of the batch-last input with the batch-last
output gradient and an image-sized window (BUILD_NOTES.md, "Where the time goes"); oneDNN, which PyTorch's CPU
convolutions use, has a direct weight-gradient kernel for NHWC. `onednn_weight_grad.cc` wraps it as an FFI
handler; this script builds it, checks it against XLA's values, and times:

  --mode=layers  the weight gradients of ResNet-20's 3x3 convolutions alone, XLA against oneDNN;
  --mode=step    a model's train step (`jaxcnn.bench`'s) with jaxcnn.fast_forms on, its float32 3x3 convolutions
                 of more than 8 input channels keeping XLA's forward and input gradient, their weight
                 gradients XLA's or oneDNN's: both steps compiled in this process, timed in turns (median
                 images/s and CPU milliseconds per step), and their first steps' results compared.

Needs oneDNN's headers and library (Debian/Ubuntu: `apt-get install libdnnl-dev`) and a C++17 compiler;
oneDNN's OpenMP threads should sleep while XLA's run (`OMP_WAIT_POLICY=passive`). From the repository root:

  OMP_WAIT_POLICY=passive OMP_NUM_THREADS=2 python experiments/benchmark/onednn_weight_grad.py --mode=layers
  OMP_WAIT_POLICY=passive OMP_NUM_THREADS=2 python experiments/benchmark/onednn_weight_grad.py --mode=step
"""

import argparse
import ctypes
import functools
import inspect
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from jaxcnn import fast_forms  # noqa: E402

print(fast_forms.enable(), flush=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from jaxcnn.fast_forms import conv  # noqa: E402
from jaxcnn.models import layers  # noqa: E402

SOURCE = pathlib.Path(__file__).with_suffix(".cc")
TARGET = "onednn_conv_weight_grad"
NHWC = ("NHWC", "HWIO", "NHWC")
# (name, batch, height, channels) of ResNet-20's stride-1 3x3 convolutions, batch 128
LAYERS = [("stage 1", 128, 32, 16), ("stage 2", 128, 16, 32), ("stage 3", 128, 8, 64)]


def build_and_register(build_dir: pathlib.Path) -> None:
  """Compiles the handler against this jaxlib's FFI headers and registers it as TARGET."""
  build_dir.mkdir(parents=True, exist_ok=True)
  library = build_dir / f"lib{TARGET}.so"
  compile_command = ["g++", "-O2", "-std=c++17", "-shared", "-fPIC", f"-I{jax.ffi.include_dir()}"]
  built = subprocess.run([*compile_command, str(SOURCE), "-o", str(library), "-ldnnl"], capture_output=True, text=True)
  if built.returncode:
    raise SystemExit(f"building {SOURCE.name} failed (needs g++ and oneDNN's libdnnl-dev):\n{built.stderr[-3000:]}")
  handler = ctypes.cdll.LoadLibrary(str(library)).OnednnConvWeightGrad
  jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(handler), platform="cpu")


def xla_conv(strides, pads, x, w):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=NHWC)


def onednn_weight_grad(strides, pads, x, grad, weight_shape):
  (top, bottom), (left, right) = pads
  attributes = dict(
    stride_h=strides[0], stride_w=strides[1], pad_top=top, pad_bottom=bottom, pad_left=left, pad_right=right
  )
  result = jax.ShapeDtypeStruct(weight_shape, jnp.float32)
  return jax.ffi.ffi_call(TARGET, result)(x, grad, **{key: np.int64(value) for key, value in attributes.items()})


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def conv_with_onednn_weight_grad(strides, pads, x, w):
  return xla_conv(strides, pads, x, w)


def _forward(strides, pads, x, w):
  return xla_conv(strides, pads, x, w), (x, w)


def _backward(strides, pads, residuals, grad):
  x, w = residuals
  input_grad = jax.vjp(lambda x: xla_conv(strides, pads, x, w), x)[1](grad)[0]
  return input_grad, onednn_weight_grad(strides, pads, x, grad, w.shape)


conv_with_onednn_weight_grad.defvjp(_forward, _backward)


def conv_form(lhs, rhs, window_strides, padding, *args, **kwargs):
  """jaxcnn.fast_forms' convolution, except float32 3x3 ones of more than 8 input channels (XLA's form there,
  behind the same barrier) take oneDNN's weight gradient."""
  call = inspect.signature(conv.conv_general_dilated).bind(lhs, rhs, window_strides, padding, *args, **kwargs)
  call.apply_defaults()
  options = [call.arguments[name] for name in ("lhs_dilation", "rhs_dilation", "dimension_numbers")]
  if (
    lhs.dtype != jnp.float32
    or rhs.shape[:2] != (3, 3)
    or lhs.shape[-1] <= conv.NARROW_MAX_CHANNELS
    or not conv._plain_nhwc_conv_on_cpu(
      lhs, rhs, *options, call.arguments["feature_group_count"], call.arguments["kwargs"]
    )
  ):
    return conv.conv_general_dilated(lhs, rhs, window_strides, padding, *args, **kwargs)
  pads = lax.padtype_to_pads(lhs.shape[1:3], (3, 3), window_strides, padding) if isinstance(padding, str) else padding
  pads = tuple(map(tuple, pads))
  return conv_with_onednn_weight_grad(tuple(window_strides), pads, lax.optimization_barrier(lhs), rhs)


def timed(run, calls: int) -> tuple[float, float]:
  """Wall and CPU seconds of `calls` calls of run() (which returns something to wait on)."""
  wall, cpu = time.perf_counter(), time.process_time()
  jax.block_until_ready([run() for _ in range(calls)])
  return time.perf_counter() - wall, time.process_time() - cpu


def weight_grads(channels: int):
  """XLA's and oneDNN's weight gradient of a stride-1 3x3 convolution with `channels` in and out, jitted."""
  shape, pads = (3, 3, channels, channels), ((1, 1), (1, 1))
  xla = lambda x, grad: jax.vjp(lambda w: xla_conv((1, 1), pads, x, w), jnp.zeros(shape))[1](grad)[0]
  onednn = lambda x, grad: onednn_weight_grad((1, 1), pads, x, grad, shape)
  return {"XLA": jax.jit(xla), "oneDNN": jax.jit(onednn)}


def layers_mode(rounds: int, calls: int = 5) -> None:
  rng = np.random.default_rng(0)
  for name, batch, size, channels in LAYERS:
    inputs = [jnp.asarray(rng.normal(size=(batch, size, size, channels)), jnp.float32) for _ in range(2)]
    forms = weight_grads(channels)
    expected = forms["XLA"](*inputs)
    scale = float(jnp.max(jnp.abs(expected)))
    np.testing.assert_allclose(forms["oneDNN"](*inputs), expected, rtol=1e-5, atol=1e-5 * scale)
    times = {form: [] for form in forms}
    for _ in range(rounds):
      for form, function in forms.items():
        times[form].append(timed(functools.partial(function, *inputs), calls))
    milliseconds = {
      form: [statistics.median(run[i] for run in runs) / calls * 1e3 for i in (0, 1)] for form, runs in times.items()
    }
    print(
      f"ResNet-20 {name} ({size}x{size}, {channels} -> {channels}) weight gradient, ms wall / CPU: "
      + ", ".join(f"{form} {wall:.2f} / {cpu:.2f}" for form, (wall, cpu) in milliseconds.items()),
      flush=True,
    )


def step_mode(model: str, steps: int, rounds: int) -> None:
  from jaxcnn.bench import step

  jax.config.update("jax_num_cpu_devices", 1)
  config = step.bench_config(model, 128, "float32", "pmap", 0, "fashion_mnist")
  runners = {"XLA": step.JaxStep(config, "step")}
  layers.use_fast_forms({**fast_forms.FORMS, "conv_general_dilated": conv_form})
  runners["oneDNN"] = step.JaxStep(config, "step")
  for runner in runners.values():
    runner.run(1)
  first, second = (jax.tree.leaves(runner.state.params) for runner in runners.values())
  error = max(float(jnp.max(jnp.abs(a - b)) / max(1.0, float(jnp.max(jnp.abs(a))))) for a, b in zip(first, second))
  print(f"{model}: parameters after one step, largest difference relative to each array's scale: {error:.2e}")
  figures = {form: [] for form in runners}
  for round_ in range(rounds):
    for form in sorted(runners, reverse=bool(round_ % 2)):
      cpu = time.process_time()
      wall = runners[form].run(steps)
      cpu = time.process_time() - cpu
      figures[form].append((config.batch_size * steps / wall, cpu / steps * 1e3))
  for form, runs in figures.items():
    print(
      f"{model} weight gradients {form}: median {statistics.median(r for r, _ in runs):.1f} img/s, "
      f"{statistics.median(c for _, c in runs):.0f} CPU ms/step; img/s {' '.join(f'{r:.0f}' for r, _ in runs)}"
    )


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--mode", choices=["layers", "step"], default="layers")
  parser.add_argument("--model", default="resnet20", help="--mode=step: the registered model.")
  parser.add_argument("--steps", type=int, default=5, help="--mode=step: train steps per timed turn.")
  parser.add_argument("--rounds", type=int, default=7, help="Timed turns per form.")
  parser.add_argument("--build_dir", type=pathlib.Path, default=pathlib.Path("/tmp/onednn_weight_grad"))
  args = parser.parse_args()
  build_and_register(args.build_dir)
  if args.mode == "layers":
    layers_mode(args.rounds)
  else:
    step_mode(args.model, args.steps, args.rounds)


if __name__ == "__main__":
  main()
