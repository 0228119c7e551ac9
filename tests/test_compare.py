"""`python -m jaxcnn.compare`: runs side by side from their workdirs alone."""

import csv
import json

import jax
import numpy as np
import pytest
from conftest import TINY, run_module

from jaxcnn import models

MODELS = ("lenet5", "mlp", "simple_cnn")


def true_params(name: str) -> int:
  model = models.create(name, num_classes=10)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), np.zeros((1, 28, 28, 1)), train=False))
  return sum(x.size for x in jax.tree.leaves(shapes["params"]))


@pytest.mark.slow
def test_three_tiny_runs_side_by_side(tmp_path, tiny_data_dir):
  workdirs = []
  for name in MODELS:  # trained and evaluated through the command line, as a user does
    workdir = tmp_path / name
    data = ["--config.dataset=fashion_mnist", f"--config.data_dir={tiny_data_dir}"]
    data += [f"--config.{k}={v}" for k, v in TINY.items()]
    trained = run_module("jaxcnn.main", f"--config={name}", f"--workdir={workdir}", "--config.num_epochs=1", *data)
    assert trained.returncode == 0, trained.stderr[-3000:]
    evaluated = run_module("jaxcnn.main", f"--workdir={workdir}", "--mode=eval")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    accuracy = json.loads((workdir / "eval_results.json").read_text())["top1_accuracy"]
    assert (workdir / "mistakes_test.png").is_file() == (accuracy < 1) and (workdir / "input_batch.png").is_file()
    assert (workdir / "filters.png").is_file() == (name != "mlp")  # the MLP starts with a dense layer
    workdirs.append(workdir)
  out = tmp_path / "compared"
  result = run_module("jaxcnn.compare", *map(str, workdirs), f"--out={out}")
  assert result.returncode == 0, result.stderr
  with open(out / "comparison.csv") as f:
    rows = list(csv.DictReader(f))
  assert [row["model"] for row in rows] == list(MODELS)
  for row, workdir in zip(rows, workdirs):
    assert int(row["params"]) == true_params(row["model"]), row
    test = json.loads((workdir / "eval_results.json").read_text())
    assert float(row["test top-1"]) == test["top1_accuracy"] and float(row["test top-5"]) == test["top5_accuracy"]
    assert row["epochs"] == "1" and float(row["images/s"]) > 0 and int(row["mult-adds"]) > 0, row
    assert float(row["best val top-1"]) >= 0, row  # TINY holds out 60 validation images
    shown = f"| {workdir.name} | {row['model']} | {int(row['params']):,} |"
    assert sum(line.startswith(shown) for line in result.stdout.splitlines()) == 1, result.stdout
  assert (out / "comparison.png").stat().st_size > 0 and (out / "comparison.md").is_file()


def test_a_folder_that_is_not_a_workdir_is_refused_with_one_line(tmp_path):
  (tmp_path / "photos").mkdir()
  result = run_module("jaxcnn.compare", str(tmp_path / "photos"), f"--out={tmp_path / 'out'}")
  assert result.returncode != 0
  lines = result.stderr.strip().splitlines()
  assert lines == [f"jaxcnn.compare: error: {tmp_path / 'photos'} is not a jaxcnn workdir (no config.json)"], lines
  assert not (tmp_path / "out").exists()
