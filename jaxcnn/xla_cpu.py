"""XLA:CPU settings that speed up the zoo's train steps, set before JAX starts its CPU backend.

XLA reads XLA_FLAGS once, when the first backend starts, and aborts the process on a flag its version
does not know; so the flags below are added only for the jaxlib versions they were measured on, and never
over a value the user set. They change how the work is scheduled, not what is computed (float32 sums in
another order).

`--xla_cpu_experimental_ynn_fusion_type=reduce` (YNNPACK for reductions only): jaxlib 0.10 hands
convolutions and their gradients to YNNPACK fusions by default, which are slow for the zoo's small-channel
convolutions (LeNet-5's C1 filter gradient, 1 input channel: 4.9 ms of a ~20 ms step) and whose outputs
need extra layout transposes; XLA's own (Eigen) convolutions do them faster. Reductions (BatchNorm's
statistics and their gradients) are faster in YNNPACK than XLA's own, which splits each into a windowed
reduction. Measured on 2 CPU cores, batch 128, SGD, interleaved runs (experiments/benchmark/ab_env.py):
no YNNPACK fusions against XLA's default: LeNet-5 1.99x, the small CNN 1.25x, ResNet-20 1.19x images/s;
then YNNPACK reductions against none: ResNet-20 1.08x, AlexNet 1.03x, LeNet-5 1.0x (noise).

`--xla_disable_hlo_passes=cse_barrier_expander` keeps optimization barriers until fusion, where XLA
otherwise drops them first thing; `jaxcnn.models.layers.conv_general_dilated` places one on each
convolution's input so its weight gradient's transpose does not recompute the input's producers
(ResNet-20 1.39x, AlexNet 1.06x). JAX's own barriers (`jax.checkpoint`) then keep their documented
meaning on the CPU too.
"""

import os

import jaxlib

FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=reduce", "--xla_disable_hlo_passes=cse_barrier_expander")
MEASURED_JAXLIB = ("0.10.",)


def apply() -> list[str]:
  """Adds the flags to XLA_FLAGS (call before JAX's first use of a device); returns those added."""
  if not jaxlib.__version__.startswith(MEASURED_JAXLIB):
    return []
  current = os.environ.get("XLA_FLAGS", "")
  added = [flag for flag in FLAGS if flag.split("=")[0] not in current]
  if added:
    os.environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
  return added
