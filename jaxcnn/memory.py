"""The memory plan: what each compiled step needs against what the device has, before the first step runs.

XLA's memory analysis of a compiled program gives, per device, the bytes of its arguments, outputs, the outputs
that reuse a donated argument's buffer (aliases) and its temporaries. A step needs arguments + outputs - aliases
+ temporaries at once. What the device has: a GPU's memory limit (after JAX's preallocation, `bytes_limit`); on
the CPU, the memory this process can still grow to (what it holds now plus what the system, or its cgroup, has
left), shared by every CPU device of the process.

From that, before any step runs (jaxcnn.train and jaxcnn.inference call these):
- a train step that does not fit stops the run with one line naming the largest batch that fits (measured from a
  second compile at a smaller batch: memory is affine in the batch) and the `grad_accum_steps` that keeps the
  global batch;
- an eval step that does not fit runs on fewer images at a time (the same results, in more steps), and the start
  line says so;
- a RESOURCE_EXHAUSTED that still happens at run time (another process took the memory, XLA's estimate was low)
  ends with one line naming the step, its sizes and what to set (`naming_out_of_memory`).
"""

import contextlib
import dataclasses
import math
import os
import pathlib
from collections.abc import Callable

import jax
import numpy as np

GIB = 2**30


class OutOfMemoryError(RuntimeError):
  """A step needs more memory than the device has; the message is one line that says what to set."""


def gib(num_bytes: float) -> str:
  return f"{num_bytes / GIB:.1f} GiB" if num_bytes >= GIB / 10 else f"{num_bytes / 2**20:.0f} MiB"


def tree_bytes(tree) -> int:
  """Bytes of the arrays (or shape structs) of a tree, as one device holds them."""
  return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def step_bytes(compiled) -> int | None:
  """Bytes one device needs while `compiled` runs (arguments + outputs - aliases + temporaries); None where the
  backend gives no memory analysis."""
  try:
    stats = compiled.memory_analysis()
  except (AttributeError, NotImplementedError, RuntimeError):
    return None
  if stats is None:
    return None
  return (
    stats.argument_size_in_bytes + stats.output_size_in_bytes - stats.alias_size_in_bytes + stats.temp_size_in_bytes
  )


def _cgroup_memory() -> tuple[int, int] | None:
  """(limit, usage) in bytes of this process's memory cgroup (v2, else v1), when it has a limit. The cgroup is the
  one /proc/self/cgroup names (inside a cgroup namespace, that is the mount's root)."""
  candidates = []
  for line in pathlib.Path("/proc/self/cgroup").read_text().splitlines():
    _, controllers, path = line.split(":", 2)
    path = path.lstrip("/")
    if controllers == "":
      candidates.append(pathlib.Path("/sys/fs/cgroup", path) / "memory.max")
    elif "memory" in controllers.split(","):
      candidates.append(pathlib.Path("/sys/fs/cgroup/memory", path) / "memory.limit_in_bytes")
  candidates += [pathlib.Path("/sys/fs/cgroup/memory.max"), pathlib.Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")]
  usage_file = {"memory.max": "memory.current", "memory.limit_in_bytes": "memory.usage_in_bytes"}
  for limit_file in candidates:
    try:
      limit = limit_file.read_text().strip()
      usage = int(limit_file.with_name(usage_file[limit_file.name]).read_text())
    except (OSError, ValueError):
      continue
    if limit.isdigit() and int(limit) < 2**60:  # "max", or v1's "no limit" sentinel near 2**63
      return int(limit), usage
  return None


def _meminfo(field: str) -> int:
  for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
    name, _, value = line.partition(":")
    if name == field:
      return int(value.split()[0]) * 1024
  raise OSError(f"/proc/meminfo has no {field}")


def _resident_bytes() -> int:
  return int(pathlib.Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclasses.dataclass(frozen=True)
class Capacity:
  """What one device has for a step: `bytes`, and whether the process's devices share it (the CPU)."""

  bytes: int
  shared_by_devices: int  # 1: each device has its own (GPUs); the local device count on the CPU
  where: str

  def need(self, per_device: int) -> int:
    """The bytes a step needing `per_device` on every local device takes of this capacity."""
    return per_device * self.shared_by_devices


def capacity() -> Capacity | None:
  """What the first local device has (every process takes the smallest of all processes' figures, so that they
  all decide the same); None where it cannot be told."""
  device = jax.local_devices()[0]
  stats = None
  with contextlib.suppress(Exception):  # backends without allocator statistics raise or return None
    stats = device.memory_stats()
  if stats and stats.get("bytes_limit"):
    found = Capacity(int(stats["bytes_limit"]), 1, f"{device.platform}:{device.id}'s memory")
  elif device.platform == "cpu":
    try:
      usable = _resident_bytes() + _meminfo("MemAvailable")
      cgroup = _cgroup_memory()
      if cgroup is not None:  # its limit counts what it charged: shared pages others loaded are in RSS, not usage
        limit, usage = cgroup
        usable = min(usable, _resident_bytes() + max(limit - usage, 0), limit)
      found = Capacity(usable, jax.local_device_count(), "the memory this process can use")
    except (OSError, ValueError):
      return None
  else:
    return None
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    # In MiB: without jax_enable_x64 the gather carries int32, and bytes overflow it past 2 GiB.
    smallest_mib = int(np.min(multihost_utils.process_allgather(np.int32(found.bytes // 2**20))))
    found = dataclasses.replace(found, bytes=smallest_mib * 2**20)
  return found


def fits(per_device: int | None, have: Capacity | None, resident: int = 0) -> bool:
  """Whether a step needing `per_device` bytes fits beside `resident` bytes (per device) held outside it. Unknown
  needs or capacities count as fitting: the plan then says nothing and changes nothing."""
  return per_device is None or have is None or have.need(per_device + resident) <= have.bytes


def describe(parts: list[tuple[str, int | None]], have: Capacity | None) -> str:
  """`memory: train step 11.2 GiB, validation eval step 6.3 GiB of 15.7 GiB (cpu: ...)`."""
  known = [f"{name} {gib(have.need(b) if have else b)}" for name, b in parts if b is not None]
  if not known:
    return "memory: no estimate (the backend gives none, or the steps compile at their first call)"
  where = f" of {gib(have.bytes)} ({have.where})" if have else " (the device's capacity is unknown)"
  return f"memory: {', '.join(known)}{where}"


def largest_batch(
  bytes_at: Callable[[int], int | None], per_device: int, need: int, have: Capacity, resident: int = 0
) -> int | None:
  """The largest per-device batch whose step fits, from `need` (bytes at `per_device`) and a second compile at a
  quarter of it: memory is affine in the batch (the state is fixed, activations grow with it)."""
  smaller = max(per_device // 4, 1)
  if smaller == per_device:
    return None
  at_smaller = bytes_at(smaller)
  if at_smaller is None or at_smaller >= need:
    return None
  per_example = (need - at_smaller) / (per_device - smaller)
  fixed = at_smaller - per_example * smaller
  room = have.bytes / have.shared_by_devices - resident - fixed
  return int(room // per_example) if room > per_example else 0


def grad_accum_hint(batch_size: int, devices: int, accum_steps: int, fitting_micro_batch: int) -> int | None:
  """The smallest `grad_accum_steps` above today's whose micro-batches (per device) fit, keeping the batch."""
  per_device = batch_size // devices
  for k in range(accum_steps + 1, per_device + 1):
    if per_device % k == 0 and per_device // k <= fitting_micro_batch:
      return k
  return None


@contextlib.contextmanager
def naming_out_of_memory(step: str, sizes: Callable[[], str], advice: str):
  """Turns an out-of-memory error of the XLA runtime inside the block into one OutOfMemoryError line: the step,
  `sizes()` (what it was running) and `advice` (what to set)."""
  try:
    yield
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    raise OutOfMemoryError(f"out of memory in the {step} ({sizes()}); {advice}") from None


def fit_eval(bytes_at: Callable[[int], int | None], images: int, have: Capacity | None, resident: int = 0):
  """The most images per global eval batch, up to `images`, whose step fits beside `resident` bytes per device;
  returns (images, bytes per device at it, bytes at `images` when that did not fit, else None). Fewer images per
  step give the same results in more steps. `bytes_at(images)` compiles the step for that many."""
  need = bytes_at(images)
  if fits(need, have, resident):
    return images, need, None
  devices = jax.device_count()
  per_device = images // devices
  estimate = largest_batch(lambda n: bytes_at(n * devices), per_device, need, have, resident)
  candidate = min(max(estimate or 1, 1), per_device - 1)
  while candidate >= 1:
    at_candidate = bytes_at(candidate * devices)
    if fits(at_candidate, have, resident):
      return candidate * devices, at_candidate, need
    candidate //= 2
  raise OutOfMemoryError(
    f"the eval step needs {gib(have.need(need))} at {images} images per step and does not fit "
    f"{gib(have.bytes)} ({have.where}) even at one image per device"
  )
