"""The persistent compilation cache: a second process loads the train step a first one compiled."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from jaxcnn import compile_cache

REPO = pathlib.Path(__file__).resolve().parent.parent
# Compiles LeNet-5's train step (the training code path) on 2 host devices under compile_cache.watch().
COMPILE_TRAIN_STEP = """
import functools, json, numpy as np
from jaxcnn import compile_cache
directory = compile_cache.enable()
from jaxcnn import configs, models, optim, parallel, train
config = configs.get("lenet5")
config.batch_size = 8
strategy = parallel.strategy("pmap")
state = train.create_train_state(config, models.create("lenet5", num_classes=10), (28, 28, 1),
                                 optim.create(config, steps_per_epoch=10))
batch = strategy.put_batch({"image": np.zeros((8, 28, 28, 1), np.float32), "label": np.zeros(8, np.int32)})
step = strategy.compile(functools.partial(train.train_step, options=train.StepOptions.from_config(config)),
                        donate_state=True)
with compile_cache.watch() as first_step:
  step(strategy.put_state(state), batch)
print(json.dumps({"dir": str(directory), "hits": first_step.hits, "misses": first_step.misses,
                  "describe": first_step.describe()}))
"""


def compile_in_subprocess(cache_value: str) -> dict:
  env = {
    **os.environ,
    "PYTHONPATH": str(REPO),
    "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    compile_cache.ENV: cache_value,
  }
  result = subprocess.run(
    [sys.executable, "-c", COMPILE_TRAIN_STEP], env=env, capture_output=True, text=True, timeout=300
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.splitlines()[-1])


def test_second_process_loads_the_train_step_and_a_deleted_cache_compiles_again(tmp_path):
  cache = tmp_path / "xla"
  first = compile_in_subprocess(str(cache))
  assert first["dir"] == str(cache) and first["misses"] > 0 and first["hits"] == 0, first
  assert first["describe"] == f"compiled (compilation cache {cache})"
  assert any(cache.iterdir())
  second = compile_in_subprocess(str(cache))
  # Programs are loaded from the cache. How many small programs miss varies between runs (one compiled under
  # MIN_COMPILE_SECONDS in the first process is not written; on jax 0.12 a second process also looked up
  # programs the first never compiled: 3 hits, 4 misses against 3 misses), so only the hits are asserted.
  assert second["hits"] > 0, second
  assert "loaded from the compilation cache" in second["describe"], second
  shutil.rmtree(cache)
  third = compile_in_subprocess(str(cache))
  assert third["misses"] > 0 and third["hits"] == 0, third


def test_empty_value_turns_the_cache_off(tmp_path):
  off = compile_in_subprocess("")
  assert off == {"dir": "None", "hits": 0, "misses": 0, "describe": "compiled (compilation cache off)"}


def test_resolve_order_flag_then_jaxcnn_then_jax_then_xdg(monkeypatch, tmp_path):
  for name in (compile_cache.ENV, "JAX_COMPILATION_CACHE_DIR"):
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert compile_cache.resolve() == tmp_path / "xdg" / "jaxcnn" / "xla"
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
  assert compile_cache.resolve() == tmp_path / "jax"
  monkeypatch.setenv(compile_cache.ENV, "")
  assert compile_cache.resolve() is None
  assert compile_cache.resolve(str(tmp_path / "flag")) == tmp_path / "flag"
  assert compile_cache.resolve("") is None


@pytest.mark.parametrize(
  "hits,misses,expected",
  [(2, 0, "loaded from"), (0, 1, "compiled ("), (0, 0, "already"), (1, 1, "1 program(s) loaded")],
)
def test_describe_says_where_the_programs_came_from(monkeypatch, hits, misses, expected):
  monkeypatch.setattr(compile_cache, "_enabled_dir", pathlib.Path("/cache"))
  seen = compile_cache.Compilations()
  seen.hits, seen.misses = hits, misses
  assert seen.describe().startswith(expected)
