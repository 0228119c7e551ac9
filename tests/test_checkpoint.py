"""Checkpoints a user can trust: exact resume after SIGKILL, SIGTERM saves, damaged checkpoints skipped,
device-count independence, NaN guard, eval from the workdir alone."""

import json
import logging
import pathlib
import re
import signal
import struct
import subprocess
import threading
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import ERROR_LINE_BOUND, FAKE_DEVICES, mounted_tmpfs, run_jaxcnn

from jaxcnn import checkpoint, evaluate, inference, reporting, train


def _cli(workdir, tiny_args, *extra, **options):
  """`python -m jaxcnn.main` on the tiny data in `workdir`, on 8 devices (`conftest.run_jaxcnn` takes `options`)."""
  return run_jaxcnn(*tiny_args, f"--workdir={workdir}", *extra, **{"devices": FAKE_DEVICES, "timeout": 600, **options})


def _latest_state(workdir: pathlib.Path):
  manager = ocp.CheckpointManager(workdir / "checkpoints", item_names=("state", "meta"))
  restored = manager.restore(
    manager.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
  )
  manager.close()
  return restored.state, restored.meta


def _wait_for(path: pathlib.Path, proc, timeout=120):
  deadline = time.time() + timeout
  while not path.exists():
    assert proc.poll() is None, "the run ended before it could be interrupted"
    assert time.time() < deadline
    time.sleep(0.05)


def _wait_for_a_newer_checkpoint(checkpoints: pathlib.Path, proc, timeout=60):
  """Returns once a checkpoint newer than the newest present now is complete: the run is stepping (a run
  that had hung or ended would fail here)."""

  def newest():
    return max((int(p.name) for p in checkpoints.glob("*") if p.name.isdigit()), default=-1)

  before, deadline = newest(), time.time() + timeout
  while newest() <= before:
    assert proc.poll() is None, "the run ended before it could be interrupted"
    assert time.time() < deadline, "no new checkpoint: the run is not making progress"
    time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_at_a_random_step_then_restart_ends_bitwise_equal(tiny_args, tmp_path):
  plan = ["--config.num_epochs=25", "--config.checkpoint_every_steps=3", "--config.log_every_steps=1"]
  reference_run = _cli(tmp_path / "reference", tiny_args, *plan)
  assert reference_run.returncode == 0, reference_run.stderr[-3000:]
  reference, reference_meta = _latest_state(tmp_path / "reference")
  final_step = int(reference["step"])
  assert reference_meta["epoch"] == 25 and final_step == 25 * 7  # 7 steps per epoch
  rng = np.random.default_rng(0)
  for trial in range(2):  # two random kill points: a third cost ~50 s of a suite near its 15-minute budget
    workdir = tmp_path / f"trial{trial}"
    proc = _cli(workdir, tiny_args, *plan, background=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(workdir / "metrics.jsonl", proc)
    _wait_for_a_newer_checkpoint(workdir / "checkpoints", proc)
    time.sleep(rng.uniform(0.0, 2.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The kill landed mid-run: the process died of it, and what it left is a checkpoint before the end.
    assert proc.returncode == -signal.SIGKILL, f"the run ended ({proc.returncode}) before the kill"
    killed_at = int(_latest_state(workdir)[0]["step"])
    assert 0 < killed_at < final_step, killed_at
    restarted = _cli(workdir, tiny_args, *plan)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert f"Resuming from step {killed_at} " in restarted.stdout, restarted.stdout[-3000:]
    resumed, meta = _latest_state(workdir)
    assert meta["epoch"] == 25
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(reference), strict=True):
      np.testing.assert_array_equal(a, b)  # bitwise: params, optimizer state, step, RNG


@pytest.mark.slow
def test_sigterm_saves_a_complete_checkpoint_and_exits_cleanly(tiny_args, tmp_path):
  plan = ["--config.num_epochs=400", "--config.log_every_steps=1"]
  proc = _cli(tmp_path, tiny_args, *plan, background=True, stderr=subprocess.STDOUT)
  _wait_for(tmp_path / "metrics.jsonl", proc)
  time.sleep(0.5)
  proc.send_signal(signal.SIGTERM)
  output, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, output[-2000:]
  assert "SIGTERM: saved step" in output
  saved_step = int(output.split("SIGTERM: saved step ")[1].split()[0])
  state, meta = _latest_state(tmp_path)
  assert int(state["step"]) == saved_step
  assert meta["epoch"] * 7 + meta["batches_done"] == saved_step  # 7 steps per epoch: the position is exact


def test_truncated_latest_checkpoint_is_skipped_with_a_warning(tiny_config, tmp_path, caplog):
  tiny_config.num_epochs = 2
  train.train_and_evaluate(tiny_config, tmp_path)
  steps = checkpoint.Checkpointer(tmp_path / "checkpoints").steps()
  assert steps == [7, 14]
  for data_file in (tmp_path / "checkpoints" / "14" / "state").rglob("*"):
    if data_file.is_file() and data_file.stat().st_size > 100:
      data_file.write_bytes(data_file.read_bytes()[:50])  # a save cut short by a full disk
  run = train.Run(tiny_config, tmp_path)
  with caplog.at_level(logging.WARNING):
    state, meta = run.restore()
  run.checkpointer.close()
  assert meta["epoch"] == 1 and int(state.step) == 7
  assert any("14" in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records)


def test_checkpoint_of_another_model_or_version_is_refused(tiny_config, tmp_path):
  tiny_config.num_epochs = 1
  train.train_and_evaluate(tiny_config, tmp_path)
  tiny_config.model_options.pooling = "avg"  # same parameter shapes, so only the metadata can tell ...
  tiny_config.model = "lenet5"
  meta_file = next((tmp_path / "checkpoints" / "7" / "meta").glob("*"))
  meta = json.loads(meta_file.read_text())
  meta_file.write_text(json.dumps(meta | {"jaxcnn_version": "0.0.1"}))
  with pytest.raises(ValueError, match="written by jaxcnn 0.0.1"):
    train.Run(tiny_config, tmp_path).restore()
  meta_file.write_text(json.dumps(meta | {"model": "alexnet"}))
  with pytest.raises(ValueError, match="model='alexnet'"):
    train.Run(tiny_config, tmp_path).restore()


@pytest.mark.slow
def test_eight_device_checkpoint_evaluates_the_same_on_one_device(tiny_config, tmp_path):
  tiny_config.num_epochs = 2
  train.train_and_evaluate(tiny_config, tmp_path)
  on_eight = evaluate.evaluate_checkpoint(tiny_config, tmp_path)
  # Only the workdir: the stored config is used, on a single device; as written by a jaxcnn that had no watchdog.
  stored = json.loads((tmp_path / "config.json").read_text())
  del stored["step_timeout_seconds"], stored["first_step_timeout_seconds"]
  (tmp_path / "config.json").write_text(json.dumps(stored))
  result = run_jaxcnn(f"--workdir={tmp_path}", "--mode=eval", devices=1, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  on_one = json.loads((tmp_path / "eval_results.json").read_text())
  assert on_one["num_examples"] == on_eight["num_examples"] == 203
  assert on_one["top1_accuracy"] == pytest.approx(on_eight["top1_accuracy"], abs=1e-9)
  assert on_one["loss"] == pytest.approx(on_eight["loss"], rel=1e-5)


def test_nan_at_step_k_stops_the_run_naming_k_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path, monkeypatch):
  from jaxcnn.data import pipeline

  poisoned_step = 10  # epoch 2, batch 3 (7 steps per epoch)
  original = pipeline.InputPipeline.train_batches

  def poisoned(self, epoch, start_batch=0):
    for i, batch in enumerate(original(self, epoch, start_batch), start=1):
      if epoch * 7 + i == poisoned_step:
        batch = dict(batch, image=np.full_like(batch["image"], np.nan))
      yield batch

  monkeypatch.setattr(pipeline.InputPipeline, "train_batches", poisoned)
  tiny_config.num_epochs = 3
  with pytest.raises(train.NonFiniteLossError, match=f"at step {poisoned_step};.*last good checkpoint is step 7"):
    train.train_and_evaluate(tiny_config, tmp_path)
  state, meta = _latest_state(tmp_path)
  assert int(state["step"]) == 7 and meta["epoch"] == 1
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))

  tiny_config.nan_policy = "skip"  # the option: drop the poisoned update and go on
  record = train.train_and_evaluate(tiny_config, tmp_path / "skip")
  assert record["epoch"] == 3 and np.isfinite(record["train_loss"])


@pytest.mark.slow
def test_predict_gives_the_same_top1_as_eval_and_eval_writes_the_confusion_matrix(tiny_config, tmp_path):
  from PIL import Image

  from jaxcnn import data

  tiny_config.num_epochs = 2
  train.train_and_evaluate(tiny_config, tmp_path)
  results = evaluate.evaluate_checkpoint(tiny_config, tmp_path)
  confusion = np.loadtxt(
    tmp_path / "confusion_test.csv", delimiter=",", skiprows=1, usecols=range(1, 11), dtype=np.int64
  )
  assert confusion.sum() == 203
  assert np.trace(confusion) / 203 == pytest.approx(results["top1_accuracy"])
  assert (tmp_path / "confusion_test.png").stat().st_size > 1000
  assert len(results["per_class_accuracy"]) == 10

  test = data.load(tiny_config).splits["test"]
  expected = inference.Inference(tiny_config, tmp_path, splits=("test",)).probabilities(test)
  folder = tmp_path / "images"
  folder.mkdir()
  for i, image in enumerate(test.images):
    # Odd images twice the size, each pixel a 2x2 block: the pipelines' bilinear resize (half-pixel centres)
    # gives back the original pixels exactly, as an antialiasing filter would not.
    image = image if i % 2 == 0 else image.repeat(2, axis=0).repeat(2, axis=1)
    Image.fromarray(image[..., 0]).save(folder / f"{i:03d}.png")
  predictions = evaluate.predict(tiny_config, tmp_path, str(folder))
  assert len(predictions) == 203 and len(predictions[0]["top"]) == 5
  top1 = np.array([p["top"][0]["index"] for p in predictions])
  assert np.mean(top1 == test.labels) == pytest.approx(results["top1_accuracy"])
  for prediction, probabilities in zip(predictions, expected):  # what predict says of a file is what eval computes
    for entry in prediction["top"]:
      assert entry["probability"] == pytest.approx(probabilities[entry["index"]], abs=1e-6), prediction["image"]
  assert json.loads((tmp_path / "predictions.json").read_text())[0]["image"].endswith("000.png")


@pytest.mark.slow
def test_eval_normalises_with_the_runs_statistics_and_reads_only_the_split_it_evaluates(
  tiny_config, tiny_data_dir, tmp_path
):
  import shutil

  from jaxcnn import data

  tiny_config.data_dir = str(shutil.copytree(tiny_data_dir, tmp_path / "data"))
  tiny_config.num_epochs = 1
  train.train_and_evaluate(tiny_config, tmp_path / "run")
  meta = checkpoint.Checkpointer(tmp_path / "run" / "checkpoints").read_meta()
  trained = data.InputPipeline(tiny_config, data.load(tiny_config))
  assert meta["data_stats"]["mean"] == trained.stats["mean"] and meta["data_stats"]["std"] == trained.stats["std"]
  before = evaluate.evaluate_checkpoint(tiny_config, tmp_path / "run")

  # Without the training images the test split evaluates the same: nothing is computed from them.
  for path in (tmp_path / "data").glob("train-*"):
    path.unlink()
  after = evaluate.evaluate_checkpoint(tiny_config, tmp_path / "run")
  assert after["top1_accuracy"] == before["top1_accuracy"] and after["loss"] == before["loss"]
  # The validation split is carved from them: its eval needs them and says which file is missing.
  tiny_config.eval_split = "validation"
  with pytest.raises(FileNotFoundError, match="train-images-idx"):
    evaluate.evaluate_checkpoint(tiny_config, tmp_path / "run")


@pytest.mark.slow
def test_a_checkpoint_is_only_restored_as_the_network_it_was_trained_as(tiny_config, tmp_path):
  tiny_config.num_epochs = 1
  tiny_config.model_options.activation = "tanh"
  train.train_and_evaluate(tiny_config, tmp_path)
  tiny_config.num_epochs = 2  # resuming for more epochs: the same network, accepted
  assert train.train_and_evaluate(tiny_config, tmp_path)["epoch"] == 2
  tiny_config.model_options.activation = "relu"  # same shapes, another function: refused, naming both values
  for restore in (
    lambda: train.train_and_evaluate(tiny_config, tmp_path),
    lambda: evaluate.evaluate_checkpoint(tiny_config, tmp_path),
  ):
    with pytest.raises(
      ValueError, match=r'model_options=\{"activation": "tanh", .*\}, the config has \{"activation": "relu", '
    ):
      restore()
  meta = _latest_state(tmp_path)[1]
  with pytest.raises(ValueError, match=r"jaxcnn 0\.1\.0; this is jaxcnn .*changed since: per-example dropout"):
    checkpoint.check_run_meta({**meta, "jaxcnn_version": "0.1.0"}, tmp_path, tiny_config, 10)


@pytest.fixture
def small_filesystem(tmp_path):
  """A 900 KiB tmpfs (root only): room for one LeNet-5 checkpoint, not two."""
  with mounted_tmpfs(tmp_path / "small", "900k") as mount:
    yield mount


def _events_in(directory: pathlib.Path) -> list:
  """Every event of the TensorBoard files in `directory`, read back as TensorBoard reads them (TFRecord frames)."""
  from tensorboardX.proto import event_pb2

  events = []
  for path in sorted(directory.glob("events.out.tfevents.*")):
    data, at = path.read_bytes(), 0
    while at < len(data):
      (length,) = struct.unpack("<Q", data[at : at + 8])
      events.append(event_pb2.Event.FromString(data[at + 12 : at + 12 + length]))
      at += 12 + length + 4
  return events


def test_tensorboard_events_read_back_and_a_full_disk_ends_them_with_one_warning(small_filesystem, caplog):
  tensorboard = reporting.TensorBoard(small_filesystem / "run")
  tensorboard.scalars(7, {"train_loss": 0.5, "epoch": 1, "finished": True, "dataset": "fashion_mnist"})
  tensorboard.images(7, "input_batch", np.random.default_rng(0).random((2, 3, 8, 8, 3)))
  written = [(e.step, v.tag, v.simple_value) for e in _events_in(tensorboard.directory) for v in e.summary.value]
  assert written == [(7, "train_loss", 0.5), (7, "epoch", 1.0), (7, "input_batch", 0.0)]  # numbers only, flushed
  with open(small_filesystem / "filler", "wb") as filler, pytest.raises(OSError, match="No space left"):
    while True:
      filler.write(b"\0" * 65536)
      filler.flush()

  def keep_writing():  # tensorboardX's SummaryWriter blocked here for good once its writer thread had died
    for step in range(50):
      tensorboard.scalars(step, {f"metric_{i}": float(i) for i in range(20)})
      reporting.in_background(tensorboard.images, step, "input_batch", np.zeros((2, 8, 8, 3)))
    reporting.wait_for_background()
    tensorboard.close()

  writer = threading.Thread(target=keep_writing, daemon=True)
  writer.start()
  writer.join(timeout=60)
  assert not writer.is_alive(), "writing TensorBoard events to a full disk stalled"
  warnings = [r.getMessage() for r in caplog.records if "TensorBoard events" in r.getMessage()]
  assert len(warnings) == 1 and "No space left on device" in warnings[0], warnings


@pytest.mark.slow
def test_a_full_disk_keeps_the_last_checkpoint_and_the_same_command_resumes(small_filesystem, tiny_args):
  workdir = small_filesystem / "run"
  command = [f"--workdir={workdir}", *tiny_args, "--config.num_epochs=3", "--config.checkpoint_keep_best=0"]
  full = run_jaxcnn(*command, devices=FAKE_DEVICES)
  # One short line at the end names the cause and what to do (Orbax's threads print tracebacks of their own above).
  assert full.returncode == 1 and full.stderr.count("jaxcnn: error:") == 1, full.stderr
  line = full.stderr.splitlines()[-1]
  assert line.startswith("jaxcnn: error: cannot write a checkpoint") and len(line) <= ERROR_LINE_BOUND, line
  assert "No space left on device" in line and "run the same command to resume" in line, line
  kept = int(re.search(r"the last complete one, step (\d+), is kept", line).group(1))
  assert kept > 0 and "RESOURCE_EXHAUSTED" in full.stderr  # the whole message is in the log above the line
  subprocess.run(["mount", "-o", "remount,size=20m", str(small_filesystem)], check=True)
  resumed = run_jaxcnn(*command, devices=FAKE_DEVICES)
  assert resumed.returncode == 0, resumed.stderr
  assert f"Resuming from step {kept} " in resumed.stdout, resumed.stdout
  assert json.loads((workdir / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 3
