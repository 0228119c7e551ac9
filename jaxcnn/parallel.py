"""Data parallelism: one step function, two ways to run it over every device.

The step functions in train.py are written for one device's slice of the global batch and reduce
over the named axis AXIS (gradients with `pmean`, metric sums with `psum`, BatchNorm statistics with
`axis_name=AXIS`). Both strategies bind that axis, so they compute the same update:

- `pmap`: `jax.pmap` over the local devices; state replicated with a leading device axis. The
  classic form, in maintenance mode since JAX 0.8 (it is built on `shard_map` now).
- `shard_map`: `jax.jit(jax.shard_map(...))` over a one-axis mesh of every device of every process;
  state a `NamedSharding(mesh, P())` array, batch `P(AXIS)` on its leading axis. The form JAX
  recommends for new code; it needs no leading device axis on the state.
"""

import collections
import os

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "batch"

# XLA:CPU (jaxlib 0.10) runs every local device's share of a program on one thread pool of
# max(cores, local devices) threads, and a launch first takes one of the device's 32 in-flight slots with a
# blocking wait on a thread of that same pool. With cross-process (gloo) collectives each device's share
# holds its thread until every rank has joined, so once the host has dispatched 32 steps ahead, a launch
# waiting for a slot takes the thread a running all-reduce needs and both processes wait forever. The loops
# therefore keep at most this many steps in flight (one queued behind the running one keeps any device busy).
MAX_STEPS_IN_FLIGHT = 2


def split_evenly(total: int, parts: int, what: str, into: str) -> int:
  """`total // parts`; a ValueError "{what} {total} does not divide by {into}" where it does not (or `total` < 1).
  The one check of a batch shared out (over processes, devices, micro-batches)."""
  if total < 1 or total % parts:
    raise ValueError(f"{what} {total} does not divide by {into}")
  return total // parts


def batch_layout(global_batch: int) -> tuple[int, int, int]:
  """(this process's share of the global batch, local device count, examples per device)."""
  devices, local_devices = jax.device_count(), jax.local_device_count()
  into = f"the {devices} devices ({jax.process_count()} process(es) x {local_devices} local device(s))"
  per_device = split_evenly(global_batch, devices, "batch size", into)
  return per_device * local_devices, local_devices, per_device


class Pmap:
  """`jax.pmap` over the local devices (the devices of every process join the same collectives)."""

  name = "pmap"

  @property
  def compiles_ahead_of_time(self) -> bool:
    """Whether a step can be lowered and compiled before its first call (compile_cache.SavedExecutable). In a
    multi-process run pmap's ahead-of-time lowering takes every argument as process-local and globalises it
    (jax 0.10-0.12): the executable it returns refuses the arrays pmap is called with."""
    return jax.process_count() == 1

  @property
  def _sharding(self) -> NamedSharding:
    """How pmap places its outputs: a one-axis mesh named AXIS over the local devices."""
    devices = np.array(jax.local_devices())
    return NamedSharding(jax.sharding.Mesh(devices, (AXIS,), axis_types=(AxisType.Auto,)), P(AXIS))

  def put_state(self, state):
    """One copy per local device, placed as pmap places its outputs: a state placed otherwise (flax's `replicate`
    names its mesh differently) made the second step trace, lower and compile again."""
    count, sharding = jax.local_device_count(), self._sharding
    return jax.tree.map(lambda x: jax.device_put(np.broadcast_to(x, (count, *np.shape(x))), sharding), state)

  def to_host(self, tree):
    """NumPy copy of a replicated tree: this process's first device's replica (any process works)."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0))[0], tree)

  def put_batch(self, batch: dict) -> dict:
    """This process's [local_batch, ...] as [local_devices, per_device, ...], one slice per device, placed as
    `batch_spec` says whether the batch comes from the host or from the device that augmented it (so that a step
    compiled for the spec takes every batch)."""
    count = jax.local_device_count()
    # One device_put of the whole dict: a call per array cost ~45 us more per step (4 arrays, 2-core CPU).
    return jax.device_put({k: v.reshape(count, -1, *v.shape[1:]) for k, v in batch.items()}, self._sharding)

  def batch_spec(self, local_batch: dict) -> dict:
    """What `put_batch` makes of a batch of these (shape, dtype) pairs, as ShapeDtypeStructs: a step compiles for it
    before any data is read (the memory plan)."""
    count, sharding = jax.local_device_count(), self._sharding
    return {
      k: jax.ShapeDtypeStruct((count, shape[0] // count, *shape[1:]), dtype, sharding=sharding)
      for k, (shape, dtype) in local_batch.items()
    }

  def compile(self, step_fn, *, donate_state: bool):
    return jax.pmap(step_fn, axis_name=AXIS, donate_argnums=(0,) if donate_state else ())


class ShardMap:
  """`jit` of `shard_map` over a mesh of all devices; arrays carry `NamedSharding`s."""

  name = "shard_map"
  compiles_ahead_of_time = True

  def __init__(self):
    # Auto axis types: `jax.make_mesh` defaults to Explicit axes from jax 0.11 on (JAX's "explicit sharding"
    # docs), under which the integer-label cross-entropy's scatter fails to trace.
    self.mesh = jax.make_mesh((jax.device_count(),), (AXIS,), axis_types=(AxisType.Auto,))
    self.replicated = NamedSharding(self.mesh, P())
    self.batch_sharding = NamedSharding(self.mesh, P(AXIS))

  def put_state(self, state):
    return jax.device_put(state, self.replicated)

  def to_host(self, tree):
    """NumPy copy of a replicated tree (readable on every process, unlike `jax.device_get`)."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)

  def put_batch(self, batch: dict) -> dict:
    """This process's [local_batch, ...] as its rows of the global [devices * per_device, ...] array."""
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, v) for k, v in batch.items()}

  def batch_spec(self, local_batch: dict) -> dict:
    """What `put_batch` makes of a batch of these (shape, dtype) pairs, as ShapeDtypeStructs."""
    processes = jax.process_count()
    return {
      k: jax.ShapeDtypeStruct((shape[0] * processes, *shape[1:]), dtype, sharding=self.batch_sharding)
      for k, (shape, dtype) in local_batch.items()
    }

  def compile(self, step_fn, *, donate_state: bool):
    mapped = jax.shard_map(step_fn, mesh=self.mesh, in_specs=(P(), P(AXIS)), out_specs=P(), check_vma=False)
    return jax.jit(mapped, donate_argnums=(0,) if donate_state else ())


class InFlight:
  """Dispatched steps not yet waited for, at most `limit` (MAX_STEPS_IN_FLIGHT); their outputs come back to
  the host in dispatch order as they complete, each announced to `on_complete(label)` (the watchdog)."""

  def __init__(self, to_host, on_complete=None, limit: int = MAX_STEPS_IN_FLIGHT):
    self._to_host = to_host
    self._on_complete = on_complete
    self._limit = limit
    self._queue = collections.deque()

  def push(self, outputs, label: str = "") -> list:
    """Adds a dispatched step's outputs; returns the host copies of the steps this had to wait for."""
    self._queue.append((outputs, label))
    return self._complete(len(self._queue) - self._limit)

  def drain(self) -> list:
    """Waits for every step in flight; returns their host copies."""
    return self._complete(len(self._queue))

  def _complete(self, count: int) -> list:
    done = []
    for _ in range(max(count, 0)):
      outputs, label = self._queue.popleft()
      done.append(self._to_host(jax.block_until_ready(outputs)))
      if self._on_complete is not None:
        self._on_complete(label)
    return done


STRATEGIES = {"pmap": Pmap, "shard_map": ShardMap}


def strategy(name: str):
  if name not in STRATEGIES:
    raise ValueError(f"unknown parallelism {name!r}; known: {', '.join(STRATEGIES)}")
  return STRATEGIES[name]()


def initialize_multihost(
  coordinator_address: str | None,
  num_processes: int | None,
  process_id: int | None,
  heartbeat_timeout_seconds: int = 30,
) -> None:
  """Joins this process to a multi-process run through `jax.distributed`, before any device is used.

  Explicit arguments win; otherwise JAX's cluster detection reads the environment (SLURM's
  SLURM_NTASKS/SLURM_PROCID/..., Open MPI, Kubernetes). A single process without either does nothing.
  A process that stops sending heartbeats for `heartbeat_timeout_seconds` makes every other process
  fail with an error instead of waiting forever in a collective.
  """
  explicit = [coordinator_address, num_processes, process_id]
  if any(v is not None for v in explicit) and any(v is None for v in explicit):
    raise ValueError(
      "multi-process runs need all of --coordinator_address, --num_processes and --process_id "
      "(or none of them, under SLURM)"
    )
  slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
  if coordinator_address is None and not slurm:
    return
  # CPU collectives across processes need gloo; on GPUs this setting is unused (NCCL carries them).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=coordinator_address,
    num_processes=num_processes,
    process_id=process_id,
    heartbeat_timeout_seconds=heartbeat_timeout_seconds,
    # At exit every process waits for the others (JAX's default: 300 s); a process ending on an error must not
    # wait that long for a peer that is stuck in a collective it will never leave.
    shutdown_timeout_seconds=heartbeat_timeout_seconds,
  )
