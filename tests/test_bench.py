"""`python -m jaxcnn.bench` runs end to end and reports a sane table and JSON (its speed is not tested)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = ["--batch_size=16", "--repeats=2", "--steps=2", "--warmup=1"]


def run_bench(tmp_path, *args) -> tuple[str, list[dict]]:
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # --devices picks the device count
  out = tmp_path / "bench.json"
  result = subprocess.run([sys.executable, "-m", "jaxcnn.bench", f"--json={out}", *TINY, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout, json.loads(out.read_text())


def check_records(stdout: str, records: list[dict], models: list[str], devices: int):
  assert [r["model"] for r in records] == models
  table = stdout[stdout.index("model "):].splitlines()
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
  stdout, records = run_bench(tmp_path, "--models=mlp", "--devices=1", "--mode=end_to_end", "--dataset=synthetic",
                              "--image_size=32")
  check_records(stdout, records, ["mlp"], devices=1)
  assert records[0]["mode"] == "end_to_end" and records[0]["image_shape"] == [32, 32, 1]


def test_bench_compare_pytorch(tmp_path):
  pytest.importorskip("torch")
  stdout, records = run_bench(tmp_path, "--models=lenet5,simple_cnn", "--devices=1", "--compare=pytorch")
  check_records(stdout, records, ["lenet5", "simple_cnn"], devices=1)
  assert "61,706 parameters in jaxcnn and 61,706 in PyTorch" in stdout
  for record in records:
    assert record["pytorch_params"] == record["params"]
    assert record["pytorch_images_per_sec"] > 0
    assert record["ratio"] == pytest.approx(record["images_per_sec"] / record["pytorch_images_per_sec"])


@pytest.mark.slow
def test_input_pipeline_benchmark_reports_every_row():
  """`python -m jaxcnn.data.benchmark` on a handful of JPEGs: every pipeline and train-step row is there."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  result = subprocess.run([sys.executable, "-m", "jaxcnn.data.benchmark", "--num_jpegs=8", "--batch_size=4",
                           "--batches=1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  rates = {line.rsplit(maxsplit=2)[0].strip(): float(line.split()[-2])
           for line in result.stdout.splitlines() if line.endswith("images/s")}
  assert set(rates) == {"AlexNet pipeline, JPEG folder, tf.data", "ResNet CIFAR pipeline, in memory, tfdata",
                        "ResNet CIFAR pipeline, in memory, jax", "train_step alexnet 227x227",
                        "train_step resnet20 32x32", "train_step lenet5 28x28"}
  assert all(0 < rate < float("inf") for rate in rates.values()), rates
