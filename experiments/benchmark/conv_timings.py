"""One convolution's forward, input gradient and weight gradient, XLA against PyTorch, on this machine.

Where jaxcnn's CPU train steps lose to PyTorch (BUILD_NOTES.md, "Where the time goes"): each row times
the three convolutions a train step runs for one layer of ResNet-20 or LeNet-5, batch 128, jit-compiled
with jaxcnn's XLA CPU flags, against torch.nn.functional.conv2d and autograd with every core a thread.

  python experiments/benchmark/conv_timings.py        (from the repository root; needs torch)
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

from jaxcnn import xla_flags  # noqa: E402

xla_flags.apply()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

# (name, batch, height, input channels, output channels, kernel, padding)
LAYERS = [
  ("ResNet-20 stage 1", 128, 32, 16, 16, 3, 1),
  ("ResNet-20 stage 2", 128, 16, 32, 32, 3, 1),
  ("ResNet-20 stage 3", 128, 8, 64, 64, 3, 1),
  ("LeNet-5 C1", 128, 32, 1, 6, 5, 0),
  ("LeNet-5 C3", 128, 14, 6, 16, 5, 0),
]


def milliseconds(run, repeats=5, calls=20) -> float:
  """Median over `repeats` of the mean time of `calls` calls; `run()` returns something to wait on."""
  jax.block_until_ready(run())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(calls):
      result = run()
    jax.block_until_ready(result)
    times.append((time.perf_counter() - start) / calls * 1e3)
  return statistics.median(times)


def xla_times(batch, size, inputs, outputs, kernel, pad) -> list[float]:
  rng = np.random.default_rng(0)
  x = jax.numpy.asarray(rng.normal(size=(batch, size, size, inputs)), np.float32)
  w = jax.numpy.asarray(rng.normal(size=(kernel, kernel, inputs, outputs)) * 0.1, np.float32)

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), [(pad, pad)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))

  grad = jax.numpy.ones_like(conv(x, w))
  forward = jax.jit(conv)
  input_grad = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
  weight_grad = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
  return [
    milliseconds(lambda: forward(x, w)),
    milliseconds(lambda: input_grad(x, w, grad)),
    milliseconds(lambda: weight_grad(x, w, grad)),
  ]


def pytorch_times(batch, size, inputs, outputs, kernel, pad) -> list[float]:
  x = torch.randn(batch, inputs, size, size, requires_grad=True)
  w = torch.randn(outputs, inputs, kernel, kernel, requires_grad=True)
  grad = torch.ones_like(torch.nn.functional.conv2d(x, w, padding=pad))
  conv = lambda: torch.nn.functional.conv2d(x, w, padding=pad)  # noqa: E731
  forward = milliseconds(lambda: conv().detach().numpy())
  # autograd.grad runs the forward again: subtract it to leave the gradient alone
  return [
    forward,
    milliseconds(lambda: torch.autograd.grad(conv(), x, grad)[0].numpy()) - forward,
    milliseconds(lambda: torch.autograd.grad(conv(), w, grad)[0].numpy()) - forward,
  ]


def main():
  torch.set_num_threads(os.cpu_count())
  # PyTorch first, every layer, then XLA: timed right after XLA work, PyTorch's threads contend with
  # XLA's still-spinning pool (its weight gradients measured 5x slower that way).
  pytorch_times(*LAYERS[0][1:])  # discarded: the first layer timed also pays oneDNN's and OpenMP's start-up
  theirs = [pytorch_times(*layer[1:]) for layer in LAYERS]
  print(f"{'layer':<20} {'XLA fwd / dx / dw ms':>24} {'PyTorch fwd / dx / dw ms':>26}")
  for layer, pytorch in zip(LAYERS, theirs):
    ours = xla_times(*layer[1:])
    print(
      f"{layer[0]:<20} {' / '.join(f'{t:.2f}' for t in ours):>24} {' / '.join(f'{t:.2f}' for t in pytorch):>26}",
      flush=True,
    )


if __name__ == "__main__":
  main()
