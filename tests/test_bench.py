"""`python -m jaxcnn.bench` runs end to end and reports a sane table and JSON (its speed is not tested); it
prints a jaxcnn / PyTorch ratio only for equal work, and none when its own PyTorch figure is off a plain loop's.

The PyTorch tests skip without torch, unless JAXCNN_REQUIRE_TORCH=1 (CI's PyTorch stage), where they fail."""

import ast
import importlib.util
import json
import os
import pathlib
import subprocess

import pytest
from conftest import run_jaxcnn

from jaxcnn import optim
from jaxcnn.bench import accuracy, step
from jaxcnn.bench.report import Record, table

ROOT = pathlib.Path(__file__).resolve().parent.parent
# A huge tolerance: the self-check never faults these tiny, noisy runs (its fault path has a test of its own).
TINY = ["--batch_size=16", "--repeats=2", "--steps=2", "--warmup=1", "--self_check_tolerance=1000"]


def needs_torch() -> None:
  """Skips the calling test without torch; fails it instead under JAXCNN_REQUIRE_TORCH=1."""
  if importlib.util.find_spec("torch") is None and os.environ.get("JAXCNN_REQUIRE_TORCH") == "1":
    pytest.fail("JAXCNN_REQUIRE_TORCH=1 but torch is not installed")
  pytest.importorskip("torch")


def _bench(out: pathlib.Path, *args, status: int = 0) -> subprocess.CompletedProcess:
  """`python -m jaxcnn.bench --json=out ARGS` in a subprocess that must exit with `status` (one device to start
  with: --devices picks the device count)."""
  result = run_jaxcnn(f"--json={out}", *args, module="jaxcnn.bench", timeout=600)
  assert result.returncode == status, result.stderr[-3000:]
  return result


def run_bench(tmp_path, *args, status: int = 0) -> tuple[str, list[dict]]:
  out = tmp_path / "bench.json"
  return _bench(out, *TINY, *args, status=status).stdout, json.loads(out.read_text())


def check_records(stdout: str, records: list[dict], models: list[str], devices: int):
  assert [r["model"] for r in records] == models
  table = stdout[stdout.index("model ") :].splitlines()
  assert table[0].split()[:3] == ["model", "input", "batch"]
  for record, row in zip(records, table[2:]):
    assert row.split()[0] == record["model"]
    assert record["batch_size"] == 16 and record["devices"] == devices
    assert record["images_per_sec"] > 0 and len(record["images_per_sec_runs"]) == 2
    assert record["compile_seconds"] > 0 and record["step_flops"] > 0
    assert record["mfu"] is None and record["peak_memory_bytes"] is None  # a CPU reports neither


def test_bench_two_models_table_and_json(tmp_path):
  stdout, records = run_bench(tmp_path, "--models=lenet5,mlp", "--devices=2", "--parallelism=shard_map")
  check_records(stdout, records, ["lenet5", "mlp"], devices=2)
  assert records[0]["image_shape"] == [28, 28, 1] and records[0]["params"] == 61_706
  assert records[0]["pytorch_images_per_sec"] is None


def test_bench_end_to_end_mode(tmp_path):
  stdout, records = run_bench(
    tmp_path, "--models=mlp", "--devices=1", "--mode=end_to_end", "--dataset=synthetic", "--image_size=32"
  )
  check_records(stdout, records, ["mlp"], devices=1)
  assert records[0]["mode"] == "end_to_end" and records[0]["image_shape"] == [32, 32, 1]


def test_bench_compare_pytorch(tmp_path):
  needs_torch()
  stdout, records = run_bench(
    tmp_path, "--models=lenet5,simple_cnn", "--devices=1", "--compare=pytorch", "--nopytorch_compile", "--threads=1"
  )
  check_records(stdout, records, ["lenet5", "simple_cnn"], devices=1)
  assert stdout.startswith("protocol: each framework in its own process, the other idle, ABBA order over 2 repeats")
  assert "1 CPU threads each" in stdout
  assert "61,706 parameters and 416,520 multiply-adds in jaxcnn, 61,706 and 416,520 in PyTorch" in stdout
  for record in records:
    assert record["pytorch_params"] == record["params"] and record["pytorch_macs"] == record["macs"] > 0
    assert record["pytorch_images_per_sec"] > 0 and len(record["pytorch_images_per_sec_runs"]) == 2
    assert record["ratio"] == pytest.approx(record["images_per_sec"] / record["pytorch_images_per_sec"])
    assert record["no_ratio_because"] is None and record["pytorch_compiled_images_per_sec"] is None
    # The self-check: the same twin in a plain loop, in a process of its own, as many repeats; printed beside.
    assert record["pytorch_plain_images_per_sec"] > 0 and len(record["pytorch_plain_images_per_sec_runs"]) == 2
    assert record["bench_fault"] is None
    assert f"  {record['model']}: self-check: PyTorch eager " in stdout and "in a plain loop of the same twin" in stdout
  assert "BENCH FAULT" not in stdout


def test_bench_compare_pytorch_reports_its_own_fault_instead_of_a_ratio(tmp_path):
  """A PyTorch figure off the plain loop's by more than the tolerance (0 here: any difference) is the bench's
  fault: a clear line, no ratio, the reason under the table, exit status 3; the table and JSON are still written."""
  needs_torch()
  stdout, records = run_bench(
    tmp_path,
    "--models=mlp",
    "--devices=1",
    "--compare=pytorch",
    "--nopytorch_compile",
    "--self_check_tolerance=0",
    status=3,
  )
  record = records[0]
  assert record["ratio"] is None and record["pytorch_images_per_sec"] > 0 and record["pytorch_plain_images_per_sec"] > 0
  assert record["bench_fault"].startswith("BENCH FAULT: its PyTorch eager figure")
  assert record["no_ratio_because"] == record["bench_fault"]
  assert "\nBENCH FAULT: its PyTorch eager figure" in stdout
  assert f"  mlp: no ratio: {record['bench_fault']}" in stdout


def test_pytorch_twins_are_in_the_package_and_nothing_is_loaded_by_path():
  """The twins ship in jaxcnn.bench.torch_models (pip install jaxcnn[compare]); no copy stays in experiments/;
  the bench loads no file by path; torch is imported by nothing but the twins' module (lazily, by the worker)."""
  assert importlib.util.find_spec("jaxcnn.bench.torch_models") is not None
  assert not list(ROOT.glob("experiments/**/pytorch_models.py"))
  for path in (ROOT / "jaxcnn").rglob("*.py"):
    text = path.read_text()
    assert "spec_from_file_location" not in text or path.name == "__init__.py" and path.parent.name == "configs", path
    if path.name != "torch_models.py":
      top_level = [n for n in ast.parse(text).body if isinstance(n, (ast.Import, ast.ImportFrom))]
      assert not [n for n in top_level if "torch" in ast.unparse(n).split()[1].split(".")], path


def test_worker_and_accuracy_do_not_import_each_other():
  """accuracy.py uses worker.py's one launcher; worker.py names what a process serves without importing it."""

  def imports(name: str) -> set[str]:
    tree = ast.parse((ROOT / "jaxcnn" / "bench" / f"{name}.py").read_text())
    found = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom):
        found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
      elif isinstance(node, ast.Import):
        found |= {a.name for a in node.names}
    return found

  assert "jaxcnn.bench.worker" in imports("accuracy")
  assert not {"jaxcnn.bench.accuracy", "jaxcnn.bench.__main__"} & imports("worker")
  assert "subprocess.Popen" not in (ROOT / "jaxcnn" / "bench" / "accuracy.py").read_text()
  assert "subprocess.Popen" not in (ROOT / "jaxcnn" / "bench" / "__main__.py").read_text()


def test_bench_pytorch_prints_no_ratio_for_another_device_count(tmp_path):
  needs_torch()
  stdout, records = run_bench(tmp_path, "--models=mlp", "--devices=2", "--compare=pytorch", "--nopytorch_compile")
  assert records[0]["ratio"] is None and records[0]["pytorch_images_per_sec"] > 0
  assert records[0]["no_ratio_because"] == "unequal devices: jaxcnn 2, PyTorch 1"
  assert "mlp: no ratio: unequal devices: jaxcnn 2, PyTorch 1" in stdout


@pytest.mark.parametrize(
  "field,value,reason",
  [
    ("macs", 4_089_184_256, "unequal multiply-adds: jaxcnn 3858733056, PyTorch 4089184256"),
    ("params", 1, "unequal parameters: jaxcnn 25557032, PyTorch 1"),
    ("devices", 1, "unequal devices: jaxcnn 8, PyTorch 1"),
    ("image_shape", [32, 32, 3], "unequal input shape: jaxcnn [224, 224, 3], PyTorch [32, 32, 3]"),
  ],
)
def test_unequal_work_is_refused_a_ratio(field, value, reason):
  """ResNet-50 v1 (stride in the 1x1) against torchvision's v1.5 is the classic case of unequal work."""
  ours = {"macs": 3_858_733_056, "params": 25_557_032, "devices": 8, "image_shape": [224, 224, 3]}
  assert step.unequal_work(ours, dict(ours), "step") is None
  assert step.unequal_work(ours, {**ours, field: value}, "step") == reason
  assert step.unequal_work(ours, dict(ours), "end_to_end").startswith("end_to_end")


def test_table_shows_the_reason_instead_of_a_ratio():
  record = Record(
    "resnet50",
    256,
    (224, 224, 3),
    "bfloat16",
    "step",
    "pmap",
    1,
    "H100",
    25_557_032,
    3_858_733_056,
    2000.0,
    [2000.0],
    10,
    60.0,
    "compiled",
    1e12,
    None,
    None,
    None,
    (0.0, 0.0),
    pytorch="PyTorch",
    pytorch_params=25_557_032,
    pytorch_macs=4_089_184_256,
    pytorch_images_per_sec=2500.0,
    no_ratio_because="unequal multiply-adds: jaxcnn 3858733056, PyTorch 4089184256",
  )
  lines = table([record]).splitlines()
  assert lines[2].split()[9:11] == ["2500.0", "n/a"]
  assert lines[3] == "  resnet50: no ratio: unequal multiply-adds: jaxcnn 3858733056, PyTorch 4089184256"


# Above chance (10 classes: 0.1) and reached by both sides within the tiny runs below: LeNet-5 is at ~0.77
# after one epoch on the tiny data and 1.0 after two.
TARGET = 0.5


def run_time_to_accuracy(tiny_data_dir, tmp_path, *args) -> tuple[subprocess.CompletedProcess, dict]:
  """`--mode=time_to_accuracy --compare=pytorch --target=TARGET` on the tiny IDX data: (the process, its JSON)."""
  out = tmp_path / "tta.json"
  result = _bench(out, "--mode=time_to_accuracy", "--config=lenet5", f"--target={TARGET}", "--compare=pytorch", *args)
  return result, json.loads(out.read_text())


def check_reached_the_target(side: dict) -> None:
  """One side reached TARGET and stopped at the first epoch that did, its accuracy there >= TARGET."""
  accuracies = [e["test_top1_accuracy"] for e in side["epochs"]]
  assert side["reached"] and side["epochs_to_target"] == len(accuracies), side
  assert accuracies[-1] >= TARGET and all(a < TARGET for a in accuracies[:-1]), side
  assert side["seconds_to_target"] > 0, side


def tiny_overrides(tiny_data_dir, num_epochs: int) -> list[str]:
  return [
    f"--config.data_dir={tiny_data_dir}",
    "--config.validation_size=60",
    "--config.batch_size=32",
    "--config.eval_batch_size=64",
    f"--config.num_epochs={num_epochs}",
  ]


@pytest.mark.slow
def test_time_to_accuracy_trains_with_train_and_evaluate_then_its_pytorch_twin(tiny_data_dir, tmp_path):
  needs_torch()
  result, results = run_time_to_accuracy(tiny_data_dir, tmp_path, *tiny_overrides(tiny_data_dir, 3))
  # jaxcnn's side is the project's training loop (its start line and epoch lines), reading the test split.
  assert "Training lenet5 on fashion_mnist: 240 train images" in result.stderr
  for side in ("jaxcnn", "pytorch"):  # each trains until its test accuracy reaches the target, then stops
    check_reached_the_target(results[side])
  assert results["time_ratio"] == pytest.approx(
    results["jaxcnn"]["seconds_to_target"] / results["pytorch"]["seconds_to_target"]
  )
  assert "jaxcnn / PyTorch wall time to target:" in result.stdout


def test_plain_twin_recipe_changes_only_the_pytorch_side():
  jaxcnn_config = accuracy.load_config("lenet5", {"num_epochs": 3})
  twin_config = accuracy.load_config("lenet5", {"num_epochs": 3}, accuracy.twin_fields("plain", {"num_epochs": 20}))
  assert (jaxcnn_config.num_epochs, twin_config.num_epochs) == (3, 20)
  assert (twin_config.schedule, twin_config.batch_size, twin_config.learning_rate) == ("constant", 128, 0.05)
  assert twin_config.validation_size == 0 and twin_config.label_smoothing == 0.0
  assert accuracy.twin_fields("same", {}) == {}
  one_cycle = accuracy.load_config("lenet5", {}, accuracy.twin_fields("onecycle", {}))
  schedule = optim.learning_rate_schedule(one_cycle, steps_per_epoch=100)
  # OneCycleLR's shape: max_lr / 25 at the start, max_lr after 30% of the 12 epochs, then down to 0.
  assert [float(schedule(s)) for s in (0, 360, 1200)] == pytest.approx([0.004, 0.1, 0.0], abs=1e-6)
  assert one_cycle.nesterov and one_cycle.label_smoothing == 0.0 and one_cycle.num_epochs == 12
  with pytest.raises(ValueError, match=r"--twin.epochs: config 'lenet5' has no field 'epochs'"):
    accuracy.load_config("lenet5", {}, accuracy.twin_fields("same", {"epochs": 3}))


@pytest.mark.slow
def test_time_to_accuracy_pytorch_twin_against_the_real_job_in_alternating_rounds(tiny_data_dir, tmp_path):
  """--jaxcnn_side=job trains and evaluates through jaxcnn.main; the plain twin runs its own epochs; 2 rounds."""
  needs_torch()
  result, results = run_time_to_accuracy(
    tiny_data_dir,
    tmp_path,
    "--jaxcnn_side=job",
    "--twin_recipe=plain",
    "--tta_repeats=2",
    *tiny_overrides(tiny_data_dir, 1),
    "--twin.num_epochs=3",
    "--twin.batch_size=32",  # 7 steps an epoch: at 100 (2 steps) the plain loop stays near chance
  )
  # The job's one point comes after train and eval: the eval's accuracy, written by jaxcnn.main.
  assert [e["epoch"] for e in results["jaxcnn"]["epochs"]] == [1]
  assert "eval" in result.stderr and "top-1" in result.stderr
  # Each round's job starts from an empty compilation cache of its own, which its eval process then reads, as a
  # first-time user's train and eval do.
  assert result.stderr.count("train step: compiled (compilation cache /") == 2, result.stderr[-3000:]
  assert result.stderr.count("test eval step: loaded from the compilation cache /") == 2, result.stderr[-3000:]
  for side in ("jaxcnn", "pytorch"):
    check_reached_the_target(results[side])
    rounds = results[side]["round_seconds_to_target"]
    assert len(rounds) == 2 and all(seconds > 0 for seconds in rounds), rounds
    assert results[side]["seconds_to_target"] == pytest.approx(sum(rounds) / 2)
  assert "vs its PyTorch twin (plain recipe, num_epochs=3,batch_size=32, 3 epochs at most)" in result.stdout
  # The order alternates: jaxcnn, PyTorch, then PyTorch, jaxcnn (a round's first epoch line starts each side's turn).
  epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("  ") and ": epoch " in line]
  sides = [line.split(":")[0].strip() for line in epoch_lines if ": epoch 1," in line]
  assert sides == ["jaxcnn", "pytorch", "pytorch", "jaxcnn"]


REFUSED_AUGMENT = "jaxcnn.bench: error: the PyTorch twin does not repeat train_augment='flip_lr'"


@pytest.mark.parametrize(
  "args,error",
  [
    (
      ["--config.train_augment=flip_lr"],
      "jaxcnn.bench: error: the PyTorch twin does not repeat train_augment='flip_lr'",
    ),
    (["--twin.train_augment=flip_lr"], "jaxcnn.bench: error: the PyTorch twin does not repeat train_augment='flip_lr'"),
    (["--twin.epochs=3"], "jaxcnn.bench: error: --twin: "),  # ml_collections checks the field name
  ],
)
def test_time_to_accuracy_refuses_a_recipe_the_twin_cannot_repeat(tmp_path, args, error):
  """--config.FIELD and --twin.FIELD are ml_collections' config overrides, checked before anything runs."""
  result = run_jaxcnn(
    "--mode=time_to_accuracy", "--config=lenet5", "--compare=pytorch", *args, module="jaxcnn.bench", timeout=120
  )
  assert result.returncode != 0
  assert error in result.stderr


@pytest.mark.slow
def test_input_pipeline_benchmark_reports_every_row():
  """`python -m jaxcnn.bench.pipeline` on a handful of JPEGs: every pipeline and train-step row is there."""
  result = run_jaxcnn("--num_jpegs=8", "--batch_size=4", "--batches=1", module="jaxcnn.bench.pipeline", timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  rates = {
    line.rsplit(maxsplit=2)[0].strip(): float(line.split()[-2])
    for line in result.stdout.splitlines()
    if line.endswith("images/s")
  }
  assert set(rates) == {
    "AlexNet pipeline, JPEG folder, tfdata",
    "AlexNet pipeline, JPEG folder, jax",
    "ResNet CIFAR pipeline, in memory, tfdata",
    "ResNet CIFAR pipeline, in memory, jax",
    "train_step alexnet 227x227",
    "train_step resnet20 32x32",
    "train_step lenet5 28x28",
  }
  assert all(0 < rate < float("inf") for rate in rates.values()), rates
