"""Test set-up: 8 fake CPU devices (before jax is imported) and tiny datasets written by the tests."""

import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import contextlib  # noqa: E402
import functools  # noqa: E402
import pathlib  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxcnn import compile_cache, configs  # noqa: E402
from jaxcnn.data import idx  # noqa: E402


def pytest_configure(config):
  """One compilation cache per test run, shared by the xdist workers and the subprocesses they start (they
  inherit the environment): the same small steps compile in many tests. A JAXCNN_CACHE_DIR set by the user
  is used as it is (an empty one turns the cache off)."""
  if compile_cache.ENV not in os.environ and not hasattr(config, "workerinput"):
    os.environ[compile_cache.ENV] = tempfile.mkdtemp(prefix="jaxcnn-test-xla-")
    config.add_cleanup(lambda: shutil.rmtree(os.environ.pop(compile_cache.ENV), ignore_errors=True))
  compile_cache.enable()


# The end-to-end tier that CI runs on its second Python beside the fast tier (`-m "not slow or e2e"`): train,
# eval and resume through the command line and in process, and two processes training like one.
E2E_TESTS = (
  "test_cli.py::test_train_then_eval_through_the_command_line",
  "test_train.py::test_stopped_run_resumes_and_ends_where_an_uninterrupted_run_ends",
  "test_multihost.py::test_two_processes_train_like_one_process_with_all_devices[pmap]",
)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config, items):
  marked = set()
  for item in items:
    if f"{item.path.name}::{item.name}" in E2E_TESTS:
      item.add_marker(pytest.mark.e2e)
      marked.add(f"{item.path.name}::{item.name}")
  whole_directory = any(pathlib.Path(arg.split("::")[0]).is_dir() for arg in config.args)
  if "e2e" in config.getoption("markexpr", "") and whole_directory and marked != set(E2E_TESTS):
    raise pytest.UsageError(
      f"conftest.E2E_TESTS names tests that were not collected: {', '.join(sorted(set(E2E_TESTS) - marked))}"
    )


def pytest_terminal_summary(terminalreporter, config):
  """With JAXCNN_SKIPPED_TO=FILE (set by .ci/run), the run's skipped tests, one `NODE_ID<tab>REASON` a line
  (sorted; none: an empty file): CI compares them with .ci/expected_skips.txt."""
  path = os.environ.get("JAXCNN_SKIPPED_TO")
  if not path or hasattr(config, "workerinput"):
    return
  lines = set()
  for report in terminalreporter.stats.get("skipped", []):
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    lines.add(f"{report.nodeid}\t{reason.removeprefix('Skipped: ')}")
  pathlib.Path(path).write_text("".join(f"{line}\n" for line in sorted(lines)))


def write_idx_dataset(directory: pathlib.Path, num_train: int, num_test: int, seed: int = 0, num_classes: int = 10):
  """A learnable tiny MNIST-format dataset: each class is a bright square at its own position."""
  rng = np.random.default_rng(seed)
  directory.mkdir(parents=True, exist_ok=True)
  for prefix, n in (("train", num_train), ("t10k", num_test)):
    labels = rng.integers(0, num_classes, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
      row, col = divmod(int(label), 4)
      images[i, 2 + 6 * row : 8 + 6 * row, 2 + 6 * col : 8 + 6 * col] = 200
    idx.write(directory / f"{prefix}-images-idx3-ubyte.gz", images)
    idx.write(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
  return directory


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> pathlib.Path:
  """300 train (of which 60 validation) and 203 test images: 203 divides by no batch used here."""
  return write_idx_dataset(tmp_path_factory.mktemp("tiny_fashion_mnist"), num_train=300, num_test=203)


# LeNet-5 on the tiny data: 240 training images (7 steps of 32 per epoch), 60 validation, the test split in 4
# eval batches (the last padded). tiny_config and tiny_args (the same for `python -m jaxcnn.main`) share them.
TINY = {"validation_size": 60, "batch_size": 32, "eval_batch_size": 64}


@pytest.fixture
def tiny_config(tiny_data_dir):
  return config_of(TINY, data_dir=str(tiny_data_dir), num_epochs=2, learning_rate=0.05)


@pytest.fixture
def tiny_args(tiny_data_dir) -> list[str]:
  """The command-line form of TINY: --config=lenet5 and its data overrides (no workdir, no epoch count)."""
  return ["--config=lenet5", f"--config.data_dir={tiny_data_dir}", *(f"--config.{k}={v}" for k, v in TINY.items())]


REPO = pathlib.Path(__file__).resolve().parents[1]
ERROR_LINE_BOUND = 300  # characters of a `jaxcnn: error:` line (jaxcnn/main.py ERROR_LINE_CHARACTERS)
DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
FAKE_DEVICES = 8  # the device count this file forces in XLA_FLAGS above


def jaxcnn_env(devices: int = 1, extra_env=None) -> dict[str, str]:
  """The environment of a jaxcnn subprocess: this test run's, with this checkout first on PYTHONPATH, JAX on the
  CPU, and `devices` CPU devices: 1 (the run's forced count left out of XLA_FLAGS, as on a user's machine) or
  a forced count (FAKE_DEVICES keeps the run's 8); the user's other XLA flags are kept. `extra_env` last."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
  flags = [flag for flag in env.get("XLA_FLAGS", "").split() if not flag.startswith(f"{DEVICE_COUNT_FLAG}=")]
  env["XLA_FLAGS"] = " ".join([*flags, *([f"{DEVICE_COUNT_FLAG}={devices}"] if devices > 1 else [])])
  env.update(extra_env or {})
  return env


def run_jaxcnn(
  *args: str,
  module: str = "jaxcnn.main",
  code: str | None = None,
  devices: int = 1,
  extra_env=None,
  prefix=(),
  cwd=REPO,
  timeout: float = 900,
  background: bool = False,
  stdout=subprocess.PIPE,
  stderr=subprocess.PIPE,
):
  """The one way the tests start a jaxcnn process: `python -m MODULE ARGS` as a user types it (or `python -c CODE
  ARGS`), in a fresh interpreter on this checkout, started through the command `prefix` when given (a cgroup),
  in the environment of `jaxcnn_env(devices, extra_env)`, output as text.

  In the foreground (the default) it waits up to `timeout` seconds and returns the CompletedProcess, the output
  captured; the caller asserts on it. `background=True` returns the Popen at once, its output where `stdout` and
  `stderr` say (a pipe, a file, DEVNULL, STDOUT), for the tests that signal or race a running process."""
  command = [*prefix, sys.executable, *(["-c", code] if code is not None else ["-m", module]), *args]
  options = dict(env=jaxcnn_env(devices, extra_env), cwd=cwd, stdout=stdout, stderr=stderr, text=True)
  if background:
    return subprocess.Popen(command, **options)
  result = subprocess.run(command, timeout=timeout, **options)
  # Every run of the suite holds jaxcnn's errors to what a person reads at a glance.
  errors = [line for line in (result.stderr or "").splitlines() if line.startswith("jaxcnn") and ": error:" in line]
  long = [line for line in errors if len(line) > ERROR_LINE_BOUND]
  assert not long, f"error lines over {ERROR_LINE_BOUND} characters: {long}"
  return result


def run_module(module: str, *args: str, **options):
  """`run_jaxcnn(*args, module=module, **options)`: the form the tests that name the module first use."""
  return run_jaxcnn(*args, module=module, **options)


# Shared by the tests that build configs and train small models in process.


@contextlib.contextmanager
def mounted_tmpfs(path: pathlib.Path, size: str):
  """A tmpfs of `size` (e.g. "900k") mounted at `path` for a test that fills a disk (root only: the test is skipped
  where the mount fails); unmounted after it."""
  path.mkdir()
  made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
  if made.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
  try:
    yield path
  finally:
    subprocess.run(["umount", "-l", str(path)], check=False)


def config_of(*updates: dict, name: str = "lenet5", **fields):
  """The named config (`jaxcnn.configs`) with `updates` (dicts, in order) and then `fields` applied."""
  config = configs.get(name)
  for update in (*updates, fields):
    config.update(update)
  return config


def train_steps(strategy, state, batches, options=None):
  """`train.train_step` (donating nothing) over `batches` with a data-parallel `strategy` (`jaxcnn.parallel`):
  (the state on the host, the last step's sums on the host)."""
  from jaxcnn import train

  step = strategy.compile(
    functools.partial(train.train_step, options=options or train.StepOptions()), donate_state=False
  )
  device_state, sums = strategy.put_state(state), None
  for batch in batches:
    device_state, sums = step(device_state, strategy.put_batch(batch))
  return strategy.to_host(device_state), None if sums is None else strategy.to_host(sums)


def single_device_steps(state, batches, options=None):
  """The reference the data-parallel strategies are held to: the same steps on one device, each on the whole
  global batch. (the state on the host, the last step's sums on the host)."""
  import flax.jax_utils
  import jax

  from jaxcnn import parallel, train

  one = jax.devices()[:1]
  step = jax.pmap(
    functools.partial(train.train_step, options=options or train.StepOptions()), axis_name=parallel.AXIS, devices=one
  )
  device_state, sums = flax.jax_utils.replicate(state, devices=one), None
  for batch in batches:
    device_state, sums = step(device_state, jax.tree.map(lambda x: x[None], batch))
  unreplicate = lambda tree: jax.tree.map(lambda x: np.asarray(x)[0], tree)  # noqa: E731
  return unreplicate(device_state), None if sums is None else unreplicate(sums)
