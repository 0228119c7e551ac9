"""The memory plan and eval batches: views count, small splits are padded only to a device multiple, steps are
compiled for the run's shapes before the first step, a train batch that cannot fit stops the run naming one that
does, an eval batch that cannot fit is made smaller with the same results, and the runtime's out-of-memory error
becomes one line. Limits are real: a memory cgroup around the subprocess, or a Capacity of a chosen size."""

import contextlib
import pathlib
import re
import uuid

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FAKE_DEVICES, run_jaxcnn
from test_cli import assert_one_line_error

from jaxcnn import data, inference, memory, parallel, train
from jaxcnn.data import augment

CGROUP_V1 = pathlib.Path("/sys/fs/cgroup/memory")


@pytest.mark.parametrize("views", [None, 10, 150])
@pytest.mark.parametrize("eval_batch_size", [1, 8, 80, 1000, 4096])
@pytest.mark.parametrize("num_examples", [1, 5, 13, 100, 999, 10_000])
def test_eval_images_per_step_count_views_and_pad_only_to_a_device_multiple(views, eval_batch_size, num_examples):
  devices = jax.device_count()  # 8 fake devices
  images = data.pipeline.eval_images_per_step(eval_batch_size, views, num_examples)
  assert images % devices == 0 and images >= devices
  assert images * (views or 1) <= max(eval_batch_size, (views or 1) * devices)  # views run at once, not images
  assert images <= -(-num_examples // devices) * devices  # a small split: no padding beyond its devices' share
  if num_examples >= images:  # a large split: as many images as the views allow
    assert images == max(eval_batch_size // (views or 1) // devices, 1) * devices


def test_a_five_image_split_is_evaluated_in_one_batch_of_eight_with_every_view(rgb_split_of):
  split = rgb_split_of(5)
  chain = augment.Chain("ten_crop(24)", train=False)
  images = data.pipeline.eval_images_per_step(1000, chain.num_views, len(split))
  batches = list(data.eval_batches(split, global_batch=images, mean=[0.5] * 3, std=[0.25] * 3, augment_chain=chain))
  assert [b["image"].shape for b in batches] == [(8, 10, 24, 24, 3)]
  assert batches[0]["mask"].tolist() == [True] * 5 + [False] * 3


@pytest.fixture
def rgb_split_of():
  def make(n):
    rng = np.random.default_rng(0)
    return data.Split(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 2, n).astype(np.int32))

  return make


def test_a_run_states_its_plan_and_its_first_step_uses_the_step_the_plan_compiled(tmp_path, tiny_args):
  cache = tmp_path / "cache"  # this test's own: every executable in it was written by this run
  result = run_jaxcnn(
    *tiny_args,
    f"--workdir={tmp_path / 'run'}",
    f"--compilation_cache_dir={cache}",
    "--config.num_epochs=1",
    devices=FAKE_DEVICES,
  )
  assert result.returncode == 0, result.stderr
  out = result.stdout
  pattern = (
    r"memory: train step [\d.]+ [MG]iB, validation eval step [\d.]+ [MG]iB, test eval step [\d.]+ [MG]iB of "
    r"[\d.]+ GiB \(the memory this process can use\)"
  )
  assert re.search(pattern, out), out
  # 60 validation images with eval_batch_size 64 on 8 devices: 64 (8 per device); the test split's 203 also 64.
  assert "validation eval step: compiled (compilation cache" in out, out
  assert "test eval step for --mode=eval: already compiled in this process; 64 images per step" in out, out
  written = sorted(p.name.split("-")[0] for p in (cache / "executables").glob("*.bin"))
  # One executable per step and batch shape: the real batches met the ones the plan compiled (a batch placed
  # or shaped otherwise than the plan's spec would have compiled and saved a second one).
  assert written == ["eval_step", "train_step"], written


def test_xla_memory_analysis_grows_with_the_batch_and_fits_decides_on_it(tiny_config):
  run = train.Run(tiny_config, "/tmp/unused-workdir")
  state = run.strategy.put_state(run.new_state())
  step = run.strategy.compile(train.train_step, donate_state=True)
  small, large = (memory.step_bytes(step.lower(state, run.train_batch_spec(n)).compile()) for n in (4, 64))
  assert 0 < small < large
  have = memory.Capacity(large * jax.local_device_count() - 1, jax.local_device_count(), "a test's budget")
  assert memory.fits(small, have) and not memory.fits(large, have)
  # The affine estimate from two compiles names a batch between them.
  fitting = memory.largest_batch(
    lambda n: memory.step_bytes(step.lower(state, run.train_batch_spec(n)).compile()), 64, large, have
  )
  assert 4 <= fitting < 64


def test_an_eval_batch_that_does_not_fit_is_made_smaller_and_gives_the_same_results(tiny_config):
  tiny_config.eval_batch_size = 200  # the test split's 203 images in 2 steps of 200 (25 per device)
  run = train.Run(tiny_config, "/tmp/unused-workdir")
  state = run.strategy.put_state(run.new_state())
  variables = run.eval_variables(state)[""]
  split = run.dataset.split("test")
  bytes_at = lambda n: memory.step_bytes(
    run.eval_step.prepare(variables, run.strategy.batch_spec(run.input.eval_batch_shapes(n)))
  )
  devices = jax.device_count()
  at_200, at_64 = bytes_at(200), bytes_at(64)
  have = memory.Capacity(at_64 * devices + (at_200 - at_64) * devices // 3, devices, "a test's budget")
  images, need, line = inference.plan_eval_step(run.eval_step, run.strategy, run.input, variables, split, have)
  assert 64 <= images < 200 and images % devices == 0 and memory.fits(need, have), (images, need, have)
  assert f"{images} images per step (made smaller to fit: 200 images need " in line, line

  def results(n):
    sums = inference.run_steps(run.strategy, run.eval_step, variables, run.input.eval_batches(split, n), "test")
    return data_summary(sums)

  fitted, asked = results(images), results(200)
  assert fitted["count"] == asked["count"] == 203
  assert fitted["top1"] == asked["top1"] and np.array_equal(fitted["confusion"], asked["confusion"])
  np.testing.assert_allclose(fitted["loss"], asked["loss"], rtol=1e-5)  # float sums in another order


def data_summary(sums: list[dict]) -> dict:
  return {k: np.sum([np.asarray(s[k]) for s in sums], axis=0) for k in ("count", "top1", "loss", "confusion")}


def test_the_runtime_out_of_memory_error_becomes_one_line_naming_the_step():
  strategy = parallel.strategy("pmap")
  # A real allocation failure: 40 GiB on every device, more than this machine has.
  step = strategy.compile(
    lambda variables, batch: jnp.broadcast_to(batch["mask"][0], (10 * 2**30,)) + 1, donate_state=False
  )
  batch = {"image": np.zeros((8, 4, 4, 1), np.float32), "mask": np.ones((8,), np.float32)}
  with pytest.raises(memory.OutOfMemoryError) as error:
    inference.run_steps(strategy, step, strategy.put_state({}), [batch], "test eval step")
  message = str(error.value)
  assert message.startswith("out of memory in the test eval step (this process's batch 8x4x4x1); lower ")
  assert "\n" not in message and "--config.eval_batch_size" in message


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int):
  """A cgroup (v1) with a memory limit, and the command prefix that starts a command inside it."""
  path = CGROUP_V1 / f"jaxcnn-test-{uuid.uuid4().hex[:8]}"
  try:
    path.mkdir()
    (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
  except OSError as e:
    pytest.skip(f"cannot create a memory cgroup here ({e})")
  try:
    yield ["sh", "-c", f'echo $$ > {path / "cgroup.procs"} && exec "$@"', "sh"]
  finally:
    with contextlib.suppress(OSError):
      path.rmdir()


@pytest.mark.slow
def test_a_train_batch_that_does_not_fit_stops_before_any_step_naming_one_that_does(tmp_path):
  limit = 3 * 2**30
  args = [
    "--config=alexnet",
    "--config.dataset=synthetic",
    "--config.synthetic.num_train=600",
    "--config.image_size=224",
    "--config.batch_size=512",  # AlexNet at 224: ~5 GiB of activations for 512 images
    f"--workdir={tmp_path / 'run'}",
  ]
  with memory_cgroup(limit) as prefix:
    result = run_jaxcnn(*args, prefix=prefix, devices=1)  # one device: one copy of the weights
  assert_one_line_error(result, "the train step needs ", "at batch_size 512", "the memory this process can use is ")
  error = next(line for line in result.stderr.splitlines() if line.startswith("jaxcnn: error:"))
  suggested = int(re.search(r"--config\.batch_size=(\d+) fits", error).group(1))
  accum = int(re.search(r"--config\.grad_accum_steps=(\d+) keeps batch_size 512", error).group(1))
  assert 1 <= suggested < 512, error
  assert 512 % accum == 0 and 512 // accum <= suggested, error
  have = float(re.search(r"can use is ([\d.]+) GiB", error).group(1))
  assert have <= limit / 2**30, error  # the cgroup's limit, not the machine's memory
  assert "train step:" not in result.stdout and not list((tmp_path / "run").glob("checkpoints/*")), result.stdout


def test_capacity_is_the_cgroup_limit_inside_one():
  limit = 2 * 2**30
  code = "from jaxcnn import memory; print(memory.capacity().bytes, memory._resident_bytes())"
  with memory_cgroup(limit) as prefix:
    result = run_jaxcnn(code=code, prefix=prefix, timeout=120)
  assert result.returncode == 0, result.stderr
  capacity, resident = map(int, result.stdout.split())
  assert resident < capacity <= limit
