"""The XLA:CPU flags that speed up the zoo's train steps, per jaxlib version, added to XLA_FLAGS.

XLA reads XLA_FLAGS once, when JAX starts its first backend, and aborts the process on a flag its version
does not know ("Unknown flag in XLA_FLAGS"). So each jaxlib minor version in `FLAGS_BY_JAXLIB` lists the
flags checked to exist in it (`XLA_FLAGS=FLAG python -c "import jax; jax.numpy.ones(1).block_until_ready()"`
exits 0); any other version gets `SAFE_FLAGS` only; and a flag the user set in XLA_FLAGS is never
overridden. The flags change how XLA schedules the work, not what it computes (float32 sums in another
order). Measured effects, per version: BUILD_NOTES.md, "Speed on the CPU";
experiments/benchmark/ab_env.py --each_xla_flag measures them again.

`--xla_cpu_experimental_ynn_fusion_type=reduce` hands XLA:CPU's reductions (BatchNorm's statistics and
their gradients) to YNNPACK and nothing else. By default jaxlib hands convolutions and their gradients to
YNNPACK fusions as well, which are slow for the zoo's few-channel convolutions and whose outputs need extra
layout transposes; XLA's own (Eigen) convolutions run them faster, while YNNPACK's reductions are faster
than XLA's own, which split each into a windowed reduction.

`--xla_disable_hlo_passes=cse_barrier_expander` keeps optimization barriers until fusion, where XLA
otherwise drops them first thing: `jaxcnn.fast_forms.conv` places one on each convolution's input (see there),
and JAX's own barriers (`jax.checkpoint`) then keep their documented meaning on the CPU too.
"""

import dataclasses
import os
from collections.abc import MutableMapping

import jaxlib

YNN_REDUCTIONS_ONLY = "--xla_cpu_experimental_ynn_fusion_type=reduce"
KEEP_BARRIERS = "--xla_disable_hlo_passes=cse_barrier_expander"

# jaxlib minor version -> the flags added. Both flags were checked to be accepted by jaxlib 0.10.2, 0.11.2
# and 0.12.0.1, and measured on each (BUILD_NOTES.md, "Kernels and XLA flags"): the YNNPACK flag is most of the
# gain on all three (without it 0.73-0.83x); keeping barriers is ResNet-20's largest gain on 0.10, and on 0.12
# LeNet-5's (without it 0.86x, ResNet-20 0.99x); on 0.11 it is neutral (0.99-1.01x) and kept alike.
FLAGS_BY_JAXLIB = {
  "0.10": (YNN_REDUCTIONS_ONLY, KEEP_BARRIERS),
  "0.11": (YNN_REDUCTIONS_ONLY, KEEP_BARRIERS),
  "0.12": (YNN_REDUCTIONS_ONLY, KEEP_BARRIERS),
}
# A version not in the table: `--xla_disable_hlo_passes` is one of XLA's long-standing debug options and
# ignores a pass name it does not know (checked on all three versions above), so it cannot abort the
# process; the YNNPACK flag is experimental and may be renamed or dropped in any release.
SAFE_FLAGS = (KEEP_BARRIERS,)


def flag_name(flag: str) -> str:
  """'--xla_foo=1' -> 'xla_foo' (XLA accepts one or two leading dashes)."""
  return flag.split("=", 1)[0].lstrip("-")


def minor_version(version: str) -> str:
  """'0.10.2' -> '0.10'."""
  return ".".join(version.split(".")[:2])


def flags_for(jaxlib_version: str) -> tuple[str, ...]:
  """The flags for a jaxlib version: its table entry, or SAFE_FLAGS for a version not in the table."""
  return FLAGS_BY_JAXLIB.get(minor_version(jaxlib_version), SAFE_FLAGS)


@dataclasses.dataclass(frozen=True)
class Applied:
  """What `apply` did: the flags it added, and the user's own settings it kept in their place."""

  jaxlib_version: str
  added: tuple[str, ...]
  kept: tuple[str, ...]

  def __str__(self) -> str:
    version = f"jaxlib {self.jaxlib_version}"
    if minor_version(self.jaxlib_version) not in FLAGS_BY_JAXLIB:
      version += ", not in the flag table, so only the flags every version accepts"
    parts = [f"XLA_FLAGS for {version}: added {' '.join(self.added) or 'nothing'}"]
    if self.kept:
      parts.append(f"kept yours: {' '.join(self.kept)}")
    return "; ".join(parts)


def apply(jaxlib_version: str | None = None, environ: MutableMapping[str, str] = os.environ) -> Applied:
  """Adds the flags for `jaxlib_version` (default: the installed jaxlib) to environ["XLA_FLAGS"], except
  those the user set there already, whatever their value. Call before JAX's first use of a device."""
  jaxlib_version = jaxlib_version or jaxlib.__version__
  current = environ.get("XLA_FLAGS", "")
  users = {flag_name(flag): flag for flag in current.split()}
  wanted = flags_for(jaxlib_version)
  added = tuple(flag for flag in wanted if flag_name(flag) not in users)
  kept = tuple(users[flag_name(flag)] for flag in wanted if flag_name(flag) in users)
  if added:
    environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
  return Applied(jaxlib_version, added, kept)
