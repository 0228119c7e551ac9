"""Two real processes on this machine, joined through jax.distributed over localhost (gloo on CPU)."""

import json
import pathlib
import re
import signal
import socket
import subprocess
import time

import flax.jax_utils
import flax.linen as nn
import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from conftest import run_jaxcnn, write_idx_dataset

from jaxcnn import parallel, train, watchdog
from jaxcnn.models import layers

REPO = pathlib.Path(__file__).resolve().parents[1]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(
  args, devices: int, log: pathlib.Path, process_id=None, port=None, num_processes=2, heartbeat_timeout=20, env=None
):
  if process_id is not None:
    args = [
      *args,
      f"--coordinator_address=127.0.0.1:{port}",
      f"--num_processes={num_processes}",
      f"--process_id={process_id}",
      f"--heartbeat_timeout={heartbeat_timeout}",
    ]
  return run_jaxcnn(
    *args, devices=devices, extra_env=env, background=True, stdout=log.open("w"), stderr=subprocess.STDOUT
  )


def _saved_params(workdir: pathlib.Path):
  """The params of the latest checkpoint, read without a template (as saved: NumPy arrays)."""
  manager = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "meta"))
  restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  manager.close()
  return restored.state["params"]


@pytest.mark.slow
@pytest.mark.parametrize("parallelism", ["pmap", "shard_map"])
def test_two_processes_train_like_one_process_with_all_devices(tiny_args, tmp_path, parallelism):
  port = _free_port()
  args = [*tiny_args, "--config.num_epochs=2", f"--config.parallelism={parallelism}"]
  procs = [_launch([*args, f"--workdir={tmp_path / 'two'}"], 4, tmp_path / f"p{i}.log", i, port) for i in range(2)]
  single = _launch([*args, f"--workdir={tmp_path / 'one'}"], 8, tmp_path / "single.log")
  for p, name in zip([*procs, single], ["p0", "p1", "single"]):
    assert p.wait(timeout=240) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
  two, one = _saved_params(tmp_path / "two"), _saved_params(tmp_path / "one")
  flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])  # noqa: E731
  assert flat(two).size == flat(one).size > 0
  np.testing.assert_allclose(flat(two), flat(one), atol=1e-5, rtol=0)
  # Only process 0 reports: one metrics line per epoch, not two.
  assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 2
  assert "epoch   2" not in (tmp_path / "p1.log").read_text()
  # The memory plan's start lines say what happened: shard_map's steps compile before the first step and are
  # planned; pmap's cannot be compiled ahead across processes (parallel.Pmap.compiles_ahead_of_time).
  log = (tmp_path / "p0.log").read_text()
  if parallelism == "pmap":
    assert "memory: no estimate" in log and "  train step: compiles at its first call" in log, log[-3000:]
  else:
    assert re.search(r"memory: train step [\d.]+ [MG]iB", log) and "compiles at its first call" not in log, log


def _progress(log: pathlib.Path) -> int:
  """The last batch count process 0's progress bar printed (0 before any)."""
  counts = re.findall(r"epoch \d+/\d+ +(\d+)/\d+", log.read_text())
  return int(counts[-1]) if counts else 0


def _wait_until_training(procs, tmp_path: pathlib.Path, timeout: float = 240) -> None:
  """Returns once process 0 reported two different batch counts: both processes are stepping (every step
  needs both). A run that had hung or ended before this would fail here, not pass."""
  log, deadline, seen = tmp_path / "p0.log", time.time() + timeout, set()
  while len(seen - {0}) < 2:
    assert time.time() < deadline, log.read_text()[-3000:]
    assert all(p.poll() is None for p in procs), log.read_text()[-3000:]
    seen.add(_progress(log))
    time.sleep(0.1)


def _survivor_of_a_fault(
  args, devices: int, tmp_path, fault, heartbeat_timeout: int = 20, reached=_wait_until_training, env=None
):
  """Starts two processes, waits until `reached(procs, tmp_path)` returns (by default: once both train),
  applies `fault` to process 1; returns process 0's exit code, the seconds from the fault to its exit, and its
  log. Each process logs to tmp_path/p{i}.log."""
  port = _free_port()
  procs = [
    _launch(args, devices, tmp_path / f"p{i}.log", i, port, heartbeat_timeout=heartbeat_timeout, env=env)
    for i in range(2)
  ]
  try:
    reached(procs, tmp_path)
    fault(procs[1])
    faulted_at = time.time()
    returncode = procs[0].wait(timeout=90)
    elapsed = time.time() - faulted_at
  finally:
    for p in procs:
      p.kill()
  return returncode, elapsed, (tmp_path / "p0.log").read_text()


def _main_thread_stack(proc, log: pathlib.Path) -> str:
  """`proc`'s main-thread Python stack at this moment: SIGUSR1 makes faulthandler write every thread's stack to
  its log (jaxcnn/main.py) without stopping it."""
  offset = log.stat().st_size
  proc.send_signal(signal.SIGUSR1)
  time.sleep(0.2)
  dump = log.read_bytes()[offset:].decode(errors="replace")
  return next((t for t in re.split(r"\n(?=(?:Current thread|Thread) 0x)", dump) if "jaxcnn/main.py" in t), "")


def _when_process_1_is(phase: str, matches, timeout: float = 240):
  """A `reached` for _survivor_of_a_fault: returns once process 1's main-thread stack `matches` (a predicate),
  leaving that stack in its log as the evidence of where it was; fails if the run ends first."""

  def reached(procs, tmp_path):
    log, deadline = tmp_path / "p1.log", time.time() + timeout
    while "fast forms:" not in log.read_text():  # main.py registers the SIGUSR1 dump before this line
      assert procs[1].poll() is None and time.time() < deadline, log.read_text()[-3000:]
      time.sleep(0.05)
    while not matches(_main_thread_stack(procs[1], log)):
      assert all(p.poll() is None for p in procs), f"the run ended before process 1 was seen {phase}"
      assert time.time() < deadline, f"process 1 was never seen {phase}: {log.read_text()[-3000:]}"

  return reached


def _saved_state(workdir: pathlib.Path):
  """The latest complete checkpoint's state and metadata, as the production reader finds them."""
  manager = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "meta"))
  try:
    step = manager.latest_step()
    restored = manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
    )
  finally:
    manager.close()
  return step, restored.state, restored.meta


FAULT_PLAN = [  # 3 epochs of 3 steps, a checkpoint after every step, 100 validation steps per epoch
  "--config.num_epochs=3",
  "--config.validation_size=400",
  "--config.batch_size=32",
  "--config.eval_batch_size=4",
  "--config.checkpoint_every_steps=1",
  "--config.log_every_steps=1",
  "--config.step_timeout_seconds=30",  # far above a step, a save or a validation pass on a loaded CI machine
]


@pytest.fixture(scope="module")
def fault_data(tmp_path_factory):
  """500 training images: 400 validation (a validation pass long enough to be caught in), 100 train."""
  return write_idx_dataset(tmp_path_factory.mktemp("fault_data"), num_train=500, num_test=8)


@pytest.fixture(scope="module")
def uninterrupted(fault_data, tmp_path_factory):
  """The final state of the fault tests' plan run by two processes without a fault."""
  tmp_path = tmp_path_factory.mktemp("uninterrupted")
  port = _free_port()
  args = ["--config=lenet5", f"--config.data_dir={fault_data}", *FAULT_PLAN, f"--workdir={tmp_path / 'run'}"]
  procs = [_launch(args, 2, tmp_path / f"p{i}.log", i, port) for i in range(2)]
  for i, p in enumerate(procs):
    assert p.wait(timeout=300) == 0, (tmp_path / f"p{i}.log").read_text()[-3000:]
  return _saved_state(tmp_path / "run")


def _saving(procs, tmp_path):
  """A `reached`: returns once Orbax's temporary directory of a checkpoint being written appears beside a
  complete one."""
  checkpoints, deadline = tmp_path / "run" / "checkpoints", time.time() + 240

  def saving_after_a_complete_one():
    names = [p.name for p in checkpoints.iterdir()] if checkpoints.is_dir() else []
    return any(n.isdigit() for n in names) and any(".orbax-checkpoint-tmp" in n for n in names)

  while not saving_after_a_complete_one():
    assert all(p.poll() is None for p in procs) and time.time() < deadline, (tmp_path / "p0.log").read_text()[-3000:]
    time.sleep(0.005)


# Where process 1 is killed, and how the test knows it was there (its main-thread stack, or Orbax's files).
PHASES = {
  "compiling": _when_process_1_is(
    "compiling", lambda stack: re.search(r"jax/_src/compiler\.py(.|\n)*in _train_epoch", stack)
  ),
  "saving": _saving,
  "evaluating": _when_process_1_is("evaluating", lambda stack: re.search(r"train\.py\", line \d+ in validate", stack)),
}


@pytest.mark.slow
@pytest.mark.parametrize("phase", PHASES)
def test_a_peer_killed_while_compiling_saving_or_evaluating_ends_the_other_and_the_rerun_resumes_bitwise(
  fault_data, uninterrupted, tmp_path, phase
):
  args = ["--config=lenet5", f"--config.data_dir={fault_data}", *FAULT_PLAN, f"--workdir={tmp_path / 'run'}"]
  checkpoints = tmp_path / "run" / "checkpoints"
  unfinished = []  # the checkpoints being written when process 1 died

  def kill(process):
    process.kill()
    process.wait()
    unfinished.extend(checkpoints.glob("*.orbax-checkpoint-tmp*"))

  # The compile cache off: process 1 compiles the train step rather than loading it in a moment.
  returncode, elapsed, log = _survivor_of_a_fault(
    args, 2, tmp_path, kill, reached=PHASES[phase], env={"JAXCNN_CACHE_DIR": ""}
  )
  assert returncode != 0 and elapsed < 60, (returncode, elapsed, log[-3000:])
  assert re.search(r"jaxcnn: error: .*step_timeout_seconds=30|another task died|stopped sending heartbeats", log), log[
    -3000:
  ]
  epochs_done = len(re.findall(r"^epoch +\d+ \|", log, re.MULTILINE))
  if phase == "compiling":  # no step completed anywhere: no progress, no checkpoint
    assert _progress(tmp_path / "p0.log") == 0 and not any(checkpoints.glob("[0-9]*")), log[-3000:]
  if phase == "saving":
    assert unfinished, "the save had finished before process 1 died"
  if phase == "evaluating":  # process 1 died inside a validation pass that never ended
    assert epochs_done < 3 and _progress(tmp_path / "p0.log") == 3, log[-3000:]
  resumed_from = None
  if phase != "compiling":  # the last complete checkpoint reads back whole
    resumed_from, state, _ = _saved_state(tmp_path / "run")
    assert int(state["step"]) == resumed_from > 0

  (tmp_path / "again").mkdir()
  port = _free_port()
  procs = [_launch(args, 2, tmp_path / "again" / f"p{i}.log", i, port) for i in range(2)]
  for i, p in enumerate(procs):
    assert p.wait(timeout=300) == 0, (tmp_path / "again" / f"p{i}.log").read_text()[-3000:]
  again = (tmp_path / "again" / "p0.log").read_text()
  assert (f"Resuming from step {resumed_from} " in again) == (resumed_from is not None), again[-3000:]
  _, state, meta = _saved_state(tmp_path / "run")
  _, reference, _ = uninterrupted
  assert meta["epoch"] == 3
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(reference), strict=True):
    np.testing.assert_array_equal(a, b)  # bitwise: params, optimizer state, step, RNG


@pytest.mark.slow
def test_a_killed_process_makes_the_other_fail_within_60_seconds(tiny_args, tmp_path):
  args = [*tiny_args, f"--workdir={tmp_path / 'run'}", "--config.num_epochs=500", "--config.log_every_steps=1"]
  returncode, elapsed, log = _survivor_of_a_fault(args, 4, tmp_path, subprocess.Popen.kill)
  assert returncode != 0
  assert elapsed < 60, elapsed
  # JAX's heartbeat message, or gloo's own abort when the survivor's local ranks fall out of step in the
  # collective the dead peer left (seen once under load: "Received data size doesn't match expected size").
  assert re.search(r"another task died|stopped sending heartbeats|terminate called after .*gloo::", log), log[-3000:]


def _assert_the_watchdog_ended(returncode, elapsed, log, step_timeout: int, last: str, frame: str):
  """Process 0 was ended by its watchdog within 30 s of the fault, with its stacks (`frame` among them) and the
  one-line message naming the bound and the step it was at (`last`, a regex)."""
  assert returncode == watchdog.EXIT_CODE, log[-3000:]
  assert elapsed < 30, elapsed
  assert "stacks of all threads" in log and frame in log, log[-3000:]
  assert re.search(
    rf"jaxcnn: error: process 0 of 2: no train or eval step completed within "
    rf"step_timeout_seconds={step_timeout} \(last: {last}",
    log,
  ), log[-3000:]


@pytest.mark.slow
def test_a_paused_peer_makes_the_watchdog_end_the_other_with_its_stacks(tiny_args, tmp_path):
  args = [
    *tiny_args,
    f"--workdir={tmp_path / 'run'}",
    "--config.num_epochs=500",
    "--config.log_every_steps=1",
    "--config.step_timeout_seconds=8",
    # No validation pass: a pause landing just before the first one would meet the eval step's compile bound
    # (first_step_timeout_seconds), not the step bound under test. Since the train step compiles once per run,
    # the first epoch's steps come fast enough for that to happen.
    "--config.validation_size=0",
  ]
  returncode, elapsed, log = _survivor_of_a_fault(
    args, 2, tmp_path, lambda p: p.send_signal(signal.SIGSTOP), heartbeat_timeout=120
  )
  _assert_the_watchdog_ended(returncode, elapsed, log, 8, r"train step \d+", "in train_and_evaluate")


@pytest.mark.slow
@pytest.mark.parametrize("parallelism", ["pmap", "shard_map"])
def test_two_processes_cross_200_sync_points_and_finish(tmp_path, parallelism):
  data_dir = write_idx_dataset(tmp_path / "data", num_train=1700, num_test=100)
  port = _free_port()
  args = [
    "--config=lenet5",
    f"--workdir={tmp_path / 'run'}",
    f"--config.data_dir={data_dir}",
    "--config.validation_size=100",
    "--config.batch_size=8",
    "--config.eval_batch_size=20",
    "--config.num_epochs=1",
    "--config.log_every_steps=2",
    "--config.checkpoint_every_steps=50",
    f"--config.parallelism={parallelism}",
    "--config.step_timeout_seconds=120",
  ]
  procs = [_launch(args, 2, tmp_path / f"p{i}.log", i, port) for i in range(2)]
  for i, p in enumerate(procs):
    assert p.wait(timeout=300) == 0, (tmp_path / f"p{i}.log").read_text()[-3000:]
  record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
  assert record["step"] == 200  # 1600 training images / 8
  assert _progress(tmp_path / "p0.log") == 200


class _DropoutNet(nn.Module):
  """AlexNet's classifier in miniature: dense, ReLU, dropout 0.5, dense."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(nn.Dense(64)(x.reshape(x.shape[0], -1)))
    return nn.Dense(10)(layers.dropout(0.5, train)(x))


def test_dropout_training_gives_the_same_weights_on_1_and_8_devices(tiny_config):
  rng = np.random.default_rng(0)
  batch = {"image": rng.normal(size=(32, 8, 8, 1)).astype(np.float32), "label": rng.integers(0, 10, 32)}
  state = train.create_train_state(tiny_config, _DropoutNet(), (8, 8, 1), optax.sgd(0.5))
  strategy = parallel.Pmap()
  step8 = strategy.compile(train.train_step, donate_state=False)
  one = jax.pmap(train.train_step, axis_name=parallel.AXIS, devices=jax.devices()[:1])
  state8, state1 = strategy.put_state(state), flax.jax_utils.replicate(state, devices=jax.devices()[:1])
  for _ in range(3):
    state8, _ = step8(state8, strategy.put_batch(batch))
    state1, _ = one(state1, jax.tree.map(lambda x: x[None], batch))
  params8, params1 = strategy.to_host(state8).params, jax.tree.map(lambda x: np.asarray(x[0]), state1.params)
  for a, b in zip(jax.tree.leaves(params8), jax.tree.leaves(params1), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
  # Dropout was active: another key gives other weights.
  other, _ = step8(strategy.put_state(state.replace(rng=jax.random.PRNGKey(7))), strategy.put_batch(batch))
  first, _ = step8(strategy.put_state(state), strategy.put_batch(batch))
  assert not np.allclose(
    strategy.to_host(other).params["Dense_0"]["kernel"], strategy.to_host(first).params["Dense_0"]["kernel"]
  )


@pytest.mark.slow
def test_an_eval_whose_step_stalls_ends_with_the_watchdog(tiny_config, tmp_path):
  data_dir = write_idx_dataset(tmp_path / "data", num_train=100, num_test=8000)  # 2000 eval steps of 4
  tiny_config.update(data_dir=str(data_dir), validation_size=20, num_epochs=1)
  train.train_and_evaluate(tiny_config, tmp_path / "run")
  args = [
    "--mode=eval",
    f"--workdir={tmp_path / 'run'}",
    "--config.eval_batch_size=4",
    "--config.step_timeout_seconds=5",
  ]
  # Waiting for a dispatched eval step: its step is compiled and running. Paused only seconds later, so that
  # process 0, which may compile later, has joined the steps' collectives: a peer that never joins the first
  # one within gloo's 30 s rendezvous deadline ends the other with gloo's error instead of a stall.
  stepping = lambda stack: "in run_steps" in stack and "in _complete" in stack  # noqa: E731

  def pause_soon(process):
    time.sleep(3)
    process.send_signal(signal.SIGSTOP)

  returncode, elapsed, log = _survivor_of_a_fault(
    args, 2, tmp_path, pause_soon, heartbeat_timeout=120, reached=_when_process_1_is("evaluating", stepping)
  )
  _assert_the_watchdog_ended(returncode, elapsed, log, 5, r"test eval step \d+\)", "in run_steps")
