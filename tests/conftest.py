"""Test set-up: 8 fake CPU devices (before jax is imported) and tiny datasets written by the tests."""

import os

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
  config = configs.get("lenet5")
  config.data_dir = str(tiny_data_dir)
  config.update(TINY)
  config.num_epochs = 2
  config.learning_rate = 0.05
  return config


@pytest.fixture
def tiny_args(tiny_data_dir) -> list[str]:
  """The command-line form of TINY: --config=lenet5 and its data overrides (no workdir, no epoch count)."""
  return ["--config=lenet5", f"--config.data_dir={tiny_data_dir}", *(f"--config.{k}={v}" for k, v in TINY.items())]


REPO = pathlib.Path(__file__).resolve().parents[1]
ERROR_LINE_BOUND = 300  # characters of a `jaxcnn: error:` line (jaxcnn/main.py ERROR_LINE_CHARACTERS)
FORCED_DEVICE_COUNT = "--xla_force_host_platform_device_count=8"  # what this file adds to XLA_FLAGS above


def run_module(module: str, *args: str, cwd=REPO, extra_env=None, timeout: float = 900):
  """`python -m MODULE ARGS` as a user types it, in a fresh interpreter on this checkout: on the CPU with the
  one device a user's machine shows (the test session's forced device count is left out of XLA_FLAGS), output
  captured as text. Returns the CompletedProcess; the caller asserts on it."""
  env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
  env["XLA_FLAGS"] = " ".join(flag for flag in env.get("XLA_FLAGS", "").split() if flag != FORCED_DEVICE_COUNT)
  env.update(extra_env or {})
  result = subprocess.run(
    [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
  )
  # Every run of the suite holds jaxcnn's errors to what a person reads at a glance.
  errors = [line for line in result.stderr.splitlines() if line.startswith("jaxcnn") and ": error:" in line]
  long = [line for line in errors if len(line) > ERROR_LINE_BOUND]
  assert not long, f"error lines over {ERROR_LINE_BOUND} characters: {long}"
  return result
