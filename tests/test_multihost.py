"""Two real processes on this machine, joined through jax.distributed over localhost (gloo on CPU)."""

import os
import pathlib
import socket
import subprocess
import sys
import time

import flax.jax_utils
import flax.linen as nn
import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from jaxcnn import parallel, train
from jaxcnn.models import layers

REPO = pathlib.Path(__file__).resolve().parents[1]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(args, devices: int, log: pathlib.Path, process_id=None, port=None, num_processes=2):
  env = {**os.environ, "PYTHONPATH": str(REPO), "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  if process_id is not None:
    args = [*args, f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={num_processes}",
            f"--process_id={process_id}", "--heartbeat_timeout=20"]
  return subprocess.Popen([sys.executable, "-m", "jaxcnn.main", *args], env=env, cwd=REPO,
                          stdout=log.open("w"), stderr=subprocess.STDOUT)


def _args(tiny_data_dir, workdir, epochs):
  return ["--config=lenet5", f"--workdir={workdir}", f"--config.data_dir={tiny_data_dir}",
          "--config.validation_size=60", "--config.batch_size=32", "--config.eval_batch_size=64",
          f"--config.num_epochs={epochs}"]


def _saved_params(workdir: pathlib.Path):
  """The params of the latest checkpoint, read without a template (as saved: NumPy arrays)."""
  manager = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "meta"))
  restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  manager.close()
  return restored.state["params"]


@pytest.mark.slow
@pytest.mark.parametrize("parallelism", ["pmap", "shard_map"])
def test_two_processes_train_like_one_process_with_all_devices(tiny_data_dir, tmp_path, parallelism):
  port = _free_port()
  args = [*_args(tiny_data_dir, tmp_path / "two", 2), f"--config.parallelism={parallelism}"]
  procs = [_launch(args, 4, tmp_path / f"p{i}.log", i, port) for i in range(2)]
  single = _launch([*_args(tiny_data_dir, tmp_path / "one", 2), f"--config.parallelism={parallelism}"], 8,
                   tmp_path / "single.log")
  for p, name in zip([*procs, single], ["p0", "p1", "single"]):
    assert p.wait(timeout=240) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
  two, one = _saved_params(tmp_path / "two"), _saved_params(tmp_path / "one")
  flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])  # noqa: E731
  assert flat(two).size == flat(one).size > 0
  np.testing.assert_allclose(flat(two), flat(one), atol=1e-5, rtol=0)
  # Only process 0 reports: one metrics line per epoch, not two.
  assert len((tmp_path / "two" / "metrics.jsonl").read_text().splitlines()) == 2
  assert "epoch   2" not in (tmp_path / "p1.log").read_text()


@pytest.mark.slow
def test_a_killed_process_makes_the_other_fail_within_60_seconds(tiny_data_dir, tmp_path):
  port = _free_port()
  args = _args(tiny_data_dir, tmp_path / "run", 500)
  procs = [_launch(args, 4, tmp_path / f"p{i}.log", i, port) for i in range(2)]
  try:
    deadline = time.time() + 180
    while not (tmp_path / "run" / "metrics.jsonl").exists():  # both are training
      assert time.time() < deadline and procs[0].poll() is None, (tmp_path / "p0.log").read_text()[-3000:]
      time.sleep(0.2)
    procs[1].kill()
    killed_at = time.time()
    returncode = procs[0].wait(timeout=90)
    elapsed = time.time() - killed_at
  finally:
    for p in procs:
      p.kill()
  log = (tmp_path / "p0.log").read_text()
  assert returncode != 0
  assert elapsed < 60, elapsed
  assert "another task died" in log or "stopped sending heartbeats" in log, log[-3000:]


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
  assert not np.allclose(strategy.to_host(other).params["Dense_0"]["kernel"],
                         strategy.to_host(first).params["Dense_0"]["kernel"])
