"""The command line as a user runs it: real subprocesses, one-line errors and non-zero exits."""

import json
import pathlib
import re

import pytest
from conftest import ERROR_LINE_BOUND, FAKE_DEVICES, REPO, run_jaxcnn


def run_cli(*args, **options):
  """`python -m jaxcnn.main ARGS` on the test run's 8 fake devices (`conftest.run_jaxcnn` takes `options`)."""
  return run_jaxcnn(*args, **{"devices": FAKE_DEVICES, "timeout": 300, **options})


def assert_one_line_error(result, *fragments):
  assert result.returncode != 0, result.stdout + result.stderr
  lines = [line for line in result.stderr.splitlines() if line.startswith("jaxcnn: error:")]
  assert len(lines) == 1, result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  assert len(lines[0]) <= ERROR_LINE_BOUND, f"{len(lines[0])} characters: {lines[0]}"
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


def test_unknown_config_lists_the_known_ones(tmp_path):
  result = run_cli("--config=lenet6", f"--workdir={tmp_path}")
  assert_one_line_error(result, "unknown config 'lenet6'", "lenet5")


def test_override_of_a_missing_field_is_refused(tmp_path):
  assert_one_line_error(
    run_cli("--config=lenet5", f"--workdir={tmp_path}", "--config.learning_rat=0.1"), "learning_rat"
  )


def test_override_of_the_wrong_type_is_refused(tmp_path):
  assert_one_line_error(run_cli("--config=lenet5", f"--workdir={tmp_path}", "--config.batch_size=big"), "batch_size")


def test_missing_data_dir_is_refused(tmp_path):
  assert_one_line_error(
    run_cli("--config=lenet5", f"--workdir={tmp_path}", f"--config.data_dir={tmp_path}/none"),
    "no fashion_mnist IDX files",
  )


def test_batch_not_divisible_by_devices_is_refused(tmp_path, tiny_args):
  result = run_cli(f"--workdir={tmp_path}", *tiny_args, "--config.batch_size=30", devices=8)
  assert_one_line_error(result, "batch size 30 does not divide by the 8 devices")


@pytest.mark.slow
def test_a_run_without_validation_prepares_the_eval_step_that_eval_then_loads(tmp_path, tiny_args):
  """The default job's flow: no validation pass, so training never calls the eval step; the memory plan compiles it
  before the first step (and a resumed run loads it), and `--mode=eval WORKDIR` (config from the workdir) loads it
  untraced."""
  cache = tmp_path / "cache"  # this test's own: no other test's program can stand in for the one prepared here
  train_args = [f"--workdir={tmp_path / 'run'}", f"--compilation_cache_dir={cache}", *tiny_args]
  train_args += ["--config.validation_size=0", "--config.num_epochs=2"]
  first = run_cli(*train_args, "--epochs_per_run=1")
  assert first.returncode == 0, first.stderr
  assert f"  test eval step for --mode=eval: compiled (compilation cache {cache})" in first.stdout, first.stdout
  last = run_cli(*train_args)
  assert last.returncode == 0, last.stderr
  assert f"  test eval step for --mode=eval: loaded from the compilation cache {cache} (a saved" in last.stdout
  result = run_cli(f"--workdir={tmp_path / 'run'}", f"--compilation_cache_dir={cache}", "--mode=eval")
  assert result.returncode == 0, result.stderr
  expected = f"  test eval step: loaded from the compilation cache {cache} (a saved executable: not traced or compiled)"
  assert expected in result.stdout, result.stdout


def test_bad_values_are_refused(tmp_path, tiny_args):
  for override, fragment in (
    ("--config.schedule=linearish", "unknown schedule"),
    ("--config.model=lenet7", "unknown model"),
    ("--config.dataset=imagenet9", "unknown dataset"),
    ("--config.validation_size=300", "validation_size"),
  ):
    assert_one_line_error(run_cli(f"--workdir={tmp_path}", *tiny_args, override), fragment)


def test_eval_without_a_checkpoint_is_refused(tmp_path, tiny_args):
  assert_one_line_error(run_cli(f"--workdir={tmp_path}", *tiny_args, "--mode=eval"), "no checkpoint")


@pytest.mark.slow
def test_train_then_eval_through_the_command_line(tmp_path, tiny_args):
  workdir = tmp_path / "run"
  first = run_cli(f"--workdir={workdir}", *tiny_args, "--config.num_epochs=2", "--epochs_per_run=1")
  assert first.returncode == 0, first.stderr
  assert "epoch   1" in first.stdout and "epoch   2" not in first.stdout
  # jaxcnn's own INFO lines show by default; the libraries' (Orbax logs each file it writes) do not.
  assert "] Reading fashion_mnist from" in first.stderr, first.stderr
  info_sources = set(re.findall(r"^I\d{4} [\d:.]+ +\d+ ([\w.]+):\d+\]", first.stderr, re.MULTILINE))
  assert info_sources and info_sources <= {p.name for p in pathlib.Path(REPO, "jaxcnn").rglob("*.py")}, info_sources
  # The same command resumes, and its step comes from the compilation cache (the tests share one): the
  # executable the first process saved, or, when another test's process put the same program in JAX's cache
  # first, that program.
  result = run_cli(f"--workdir={workdir}", *tiny_args, "--config.num_epochs=2", "--epochs_per_run=1")
  assert result.returncode == 0, result.stderr
  assert "Resuming from step" in result.stdout and "epoch   2" in result.stdout
  assert "train step: loaded from the compilation cache" in result.stdout
  # The start says what will happen: fast forms, data, model, optimizer, schedule, where the step came from.
  for fragment in (
    "fast forms: ",
    "data: fashion_mnist",
    "train augmentation: ",
    "model: lenet5 (61,706 parameters; activation=relu, pooling=max)",
    "optimizer: sgd, momentum 0.9, Nesterov, weight decay 0.0005 (coupled)",
    "learning rate: 0.1, cosine over 2 epochs, linear warm-up (0.5 epochs + 0 steps)",
    "(all training images, as the run started: from its checkpoint)",  # the normalisation it resumes with
    "train step: ",
  ):
    assert fragment in result.stdout, fragment
  config = json.loads((workdir / "config.json").read_text())
  assert config["batch_size"] == 32 and config["model"] == "lenet5"
  assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 2
  assert (workdir / "training_curves.png").stat().st_size > 10_000
  events = list((workdir / "tensorboard").glob("events.out.tfevents.*"))
  assert len(events) == 2 and min(e.stat().st_size for e in events) > 1000  # each process: scalars and images

  result = run_cli(f"--workdir={workdir}", *tiny_args, "--mode=eval")
  assert result.returncode == 0, result.stderr
  # Validation and --mode=eval run one eval step: the eval loads the one the training processes compiled.
  assert "  test eval step: loaded from the compilation cache" in result.stdout, result.stdout
  results = json.loads((workdir / "eval_results.json").read_text())
  assert results["num_examples"] == 203 and results["split"] == "test"
  again = run_cli(f"--workdir={workdir}", *tiny_args, "--mode=eval")
  assert "test eval step: loaded from the compilation cache" in again.stdout, again.stdout
  assert json.loads((workdir / "eval_results.json").read_text()) == results

  assert_one_line_error(
    run_cli(f"--workdir={workdir}", *tiny_args, "--mode=eval", "--step=3"),
    "no checkpoint for step 3",
  )
  assert_one_line_error(
    run_cli(f"--workdir={workdir}", *tiny_args, "--mode=eval", "--config.eval_split=validaton"),
    "no split 'validaton'",
  )


@pytest.mark.slow
def test_eval_uses_the_network_the_checkpoint_was_trained_as(tmp_path, tiny_args):
  workdir = tmp_path / "tanh"
  network = ["--config.model_options.activation=tanh", "--config.model_options.pooling=avg"]
  trained = run_cli(f"--workdir={workdir}", *tiny_args, *network, "--config.num_epochs=1")
  assert trained.returncode == 0, trained.stderr
  # The README's eval form names the config: its ReLU/max-pool LeNet-5 is another network than the one trained.
  refused = run_cli(f"--workdir={workdir}", *tiny_args, "--mode=eval")
  assert_one_line_error(refused, "model_options", '"activation": "tanh"', '"activation": "relu"', "--config")
  assert not (workdir / "eval_results.json").exists()
  refused = run_cli(f"--workdir={workdir}", "--mode=eval", "--config.model_options.pooling=max")
  assert_one_line_error(refused, "--config.model_options", '"pooling": "avg"', '"pooling": "max"')
  # From the stored config: the run as trained, with the overrides that choose how to evaluate; others are named.
  result = run_cli(f"--workdir={workdir}", "--mode=eval", "--config.eval_split=train", "--config.num_epochs=9")
  assert result.returncode == 0, result.stderr
  assert "--config.num_epochs is not used by --mode=eval" in result.stderr, result.stderr
  results = json.loads((workdir / "eval_results.json").read_text())
  assert results["split"] == "train" and results["top1_accuracy"] > 0.3, results
  # The named config with the trained network's options is the same network: accepted, same numbers.
  same = run_cli(f"--workdir={workdir}", *tiny_args, *network, "--mode=eval", "--config.eval_split=train")
  assert same.returncode == 0, same.stderr
  assert json.loads((workdir / "eval_results.json").read_text())["top1_accuracy"] == results["top1_accuracy"]
