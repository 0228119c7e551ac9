"""The persistent compilation cache: a second process loads the train step a first one compiled, and the saved
executables: a second process calls it without tracing it."""

import json
import os
import pathlib
import pwd
import shutil

import pytest
from conftest import run_jaxcnn

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


# Three train steps of LeNet-5 through a SavedExecutable (as train.py wraps them), counting how often the step's
# Python body runs (each trace runs it once); prints the describe line, the trace count and the third step's
# outputs.
SAVED_TRAIN_STEP = """
import functools, json, sys, numpy as np
from jaxcnn import compile_cache
compile_cache.enable()
import jax
from jaxcnn import configs, models, optim, parallel, train
config = configs.get("lenet5")
config.batch_size, config.learning_rate = 8, float(sys.argv[2])
strategy = parallel.strategy(sys.argv[1])
state = train.create_train_state(config, models.create("lenet5", num_classes=10), (28, 28, 1),
                                 optim.create(config, steps_per_epoch=10))
traces = []
def step_fn(state, batch):
  traces.append(1)
  return train.train_step(state, batch, options=train.StepOptions.from_config(config))
step = compile_cache.SavedExecutable(strategy.compile(step_fn, donate_state=True), "train_step", config.to_json())
state = strategy.put_state(state)
rng = np.random.default_rng(0)
for i in range(3):
  batch = strategy.put_batch({"image": rng.normal(size=(8, 28, 28, 1)).astype(np.float32),
                              "label": rng.integers(0, 10, 8).astype(np.int32)})
  with compile_cache.watch() as seen:
    state, sums = step(state, batch)
  describe = describe if i else seen.describe()
params = [np.asarray(x).tolist() for x in jax.tree.leaves(strategy.to_host(state.params))]
print(json.dumps({"describe": describe, "traces": len(traces), "params": params,
                  "sums": {k: float(v) for k, v in strategy.to_host(sums).items()}}))
"""


def saved_step_in_subprocess(cache: pathlib.Path, strategy: str = "pmap", learning_rate: float = 0.05) -> dict:
  return compile_in_subprocess(str(cache), SAVED_TRAIN_STEP, strategy, str(learning_rate))


def compile_in_subprocess(cache_value: str, script: str = COMPILE_TRAIN_STEP, *args: str) -> dict:
  result = run_jaxcnn(*args, code=script, devices=2, extra_env={compile_cache.ENV: cache_value}, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return {**json.loads(result.stdout.splitlines()[-1]), "stderr": result.stderr}


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
  off.pop("stderr")
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


@pytest.mark.parametrize("strategy", ["pmap", "shard_map"])
def test_a_saved_train_step_is_called_without_tracing_and_gives_the_same_updates(tmp_path, strategy):
  cache = tmp_path / "xla"
  first = saved_step_in_subprocess(cache, strategy)
  # One trace for three steps: the state the strategy places and the one the step returns share a signature.
  assert first["traces"] == 1 and first["describe"] == f"compiled (compilation cache {cache})", first
  saved = list((cache / "executables").iterdir())
  assert [p.name.startswith("train_step-") for p in saved] == [True], saved
  second = saved_step_in_subprocess(cache, strategy)
  assert second["traces"] == 0, second
  assert second["describe"] == f"loaded from the compilation cache {cache} (a saved executable: not traced or compiled)"
  assert second["params"] == first["params"] and second["sums"] == first["sums"]
  # Another key (here the learning rate, which the step closes over) compiles its own executable.
  other = saved_step_in_subprocess(cache, strategy, learning_rate=0.2)
  assert other["traces"] == 1 and other["params"] != first["params"]
  assert len(list((cache / "executables").iterdir())) == 2


def test_a_damaged_saved_executable_is_compiled_again_with_a_warning(tmp_path):
  cache = tmp_path / "xla"
  first = saved_step_in_subprocess(cache)
  [saved] = (cache / "executables").iterdir()
  saved.write_bytes(saved.read_bytes()[:1000])
  again = saved_step_in_subprocess(cache)
  assert "cannot load the saved executable" in again["stderr"] and again["traces"] == 1
  assert again["params"] == first["params"]
  assert saved_step_in_subprocess(cache)["traces"] == 0  # the file was written again, whole


def test_outputs_the_file_cannot_describe_are_compiled_and_not_saved(tmp_path, monkeypatch):
  import jax
  import jax.numpy as jnp

  monkeypatch.setattr(compile_cache, "_enabled_dir", tmp_path)

  class Pair(tuple):  # a node type of its own, not an argument's tree
    pass

  jax.tree_util.register_pytree_node(Pair, lambda p: (tuple(p), None), lambda _, c: Pair(c))
  step = compile_cache.SavedExecutable(jax.jit(lambda x: Pair((x + 1, x * 2))), "pair", "key")
  assert [float(v) for v in step(jnp.ones(()))] == [2.0, 2.0]
  assert not (tmp_path / "executables").exists()


def test_a_cache_that_cannot_be_written_costs_a_warning_not_the_run(tmp_path, monkeypatch, caplog):
  import jax
  import jax.numpy as jnp

  monkeypatch.setattr(compile_cache, "_enabled_dir", tmp_path)
  (tmp_path / "executables").write_text("a file where the folder should be")
  step = compile_cache.SavedExecutable(jax.jit(lambda x: {"y": x * 3}), "triple", "key")
  with compile_cache.watch() as seen:
    assert float(step(jnp.ones(()))["y"]) == 3.0
  assert seen.saved == 0 and "cannot save the executable" in caplog.text
  assert not list(tmp_path.glob("*.tmp")) and (tmp_path / "executables").is_file()


@pytest.mark.parametrize(
  "hits,misses,expected",
  [(2, 0, "loaded from"), (0, 1, "compiled ("), (0, 0, "already"), (1, 1, "1 program(s) loaded")],
)
def test_describe_says_where_the_programs_came_from(monkeypatch, hits, misses, expected):
  monkeypatch.setattr(compile_cache, "_enabled_dir", pathlib.Path("/cache"))
  seen = compile_cache.Compilations()
  seen.hits, seen.misses = hits, misses
  assert seen.describe().startswith(expected)


# --- Safety: nothing another user could have written is loaded -----------------------------------------------------

# Enables the cache (JAXCNN_CACHE_DIR, JAXCNN_CACHE_MAX_MB from the environment) and prints what it decided.
ENABLE_ONLY = """
import json
from jaxcnn import compile_cache
directory = compile_cache.enable()
import jax
print(json.dumps({"dir": str(directory), "jax_max": jax.config.values["jax_compilation_cache_max_size"],
                  "jax_on": jax.config.values["jax_enable_compilation_cache"]}))
"""
NOBODY = 65534


def test_a_cache_directory_others_can_write_is_refused_on_one_line_and_the_run_compiles(tmp_path):
  cache = tmp_path / "xla"
  cache.mkdir()
  cache.chmod(0o777)
  refused = compile_in_subprocess(str(cache))
  assert refused["dir"] == "None" and refused["describe"] == "compiled (compilation cache off)", refused
  [line] = [line for line in refused["stderr"].splitlines() if "refused" in line]
  assert f"compilation cache {cache} refused: it is writable by other users (mode 0777)" in line, line
  assert "the run compiles without a cache; chmod go-w it or use a private directory" in line, line
  assert len(line.split("] ")[-1].split(":", 1)[-1]) - len(str(cache)) < 200, line  # one line a person reads
  assert not any(cache.iterdir())  # nothing written there either


def test_what_could_have_been_replaced_is_refused(tmp_path):
  shared = tmp_path / "shared"
  (shared / "mine").mkdir(parents=True)
  shared.chmod(0o777)  # another user could rename mine/ and put their own in its place
  with pytest.raises(compile_cache.Refused, match=f"{shared} is writable by other users"):
    compile_cache._prepare(shared / "mine")
  shared.chmod(0o1777)  # sticky and root's, like /tmp: no one else can rename what is ours
  os.chown(shared, 0, 0)
  assert compile_cache._prepare(shared / "mine") == shared / "mine"
  foreign = tmp_path / "foreign"
  foreign.mkdir(mode=0o755)
  os.chown(foreign, NOBODY, NOBODY)
  with pytest.raises(compile_cache.Refused, match=f"it is owned by .*uid {NOBODY}"):
    compile_cache._prepare(foreign)
  # Group-writable: fine for a group of ours alone (umask 002 systems give each user one), not for a shared one.
  group = tmp_path / "group"
  group.mkdir()
  group.chmod(0o770)
  os.chown(group, os.geteuid(), os.getegid())
  if {p.pw_name for p in pwd.getpwall() if p.pw_gid == os.getegid()} == {pwd.getpwuid(os.geteuid()).pw_name}:
    assert compile_cache._prepare(group) == group
  os.chown(group, os.geteuid(), NOBODY)  # nogroup: no member is us alone
  with pytest.raises(compile_cache.Refused, match="it is writable by its group \\(mode 0770\\)"):
    compile_cache._prepare(group)
  # A file of JAX's cache (loaded without asking) that another user owns or that others can write.
  for i, change in enumerate((lambda p: os.chown(p, NOBODY, NOBODY), lambda p: p.chmod(0o666))):
    cache = tmp_path / f"cache{i}"
    compile_cache._prepare(cache)
    entry = cache / "jit_step-0123abcd-cache"
    entry.write_bytes(b"machine code")
    compile_cache._prepare(cache)
    change(entry)
    with pytest.raises(compile_cache.Refused, match=f"{entry} is (owned by|writable by other users)"):
      compile_cache._prepare(cache)


def test_directories_and_files_the_cache_writes_are_private_and_executables_are_not_pickles(tmp_path):
  cache = tmp_path / "new" / "xla"
  saved_step_in_subprocess(cache)
  for directory in (tmp_path / "new", cache, cache / "executables"):
    assert directory.stat().st_mode & 0o777 == 0o700, directory
  [saved] = (cache / "executables").iterdir()
  assert saved.stat().st_mode & 0o777 == 0o600
  data = saved.read_bytes()
  assert data.startswith(compile_cache._MAGIC)  # a JSON header, then JAX's bytes: nothing of ours unpickles
  json.loads(data[len(compile_cache._MAGIC) : data.index(b"\n", len(compile_cache._MAGIC))])


@pytest.mark.parametrize("change", ["owner", "mode"])
def test_a_saved_executable_another_user_owns_or_others_can_write_is_not_loaded(tmp_path, change):
  cache = tmp_path / "xla"
  first = saved_step_in_subprocess(cache)
  [saved] = (cache / "executables").iterdir()
  if change == "owner":
    os.chown(saved, NOBODY, NOBODY)
  else:
    saved.chmod(0o666)
  again = saved_step_in_subprocess(cache)
  assert again["traces"] == 1 and again["params"] == first["params"], again
  reason = f"owned by user nobody (uid {NOBODY})" if change == "owner" else "writable by other users (mode 0666)"
  assert f"not loading the saved executable: {saved} is {reason}; compiling it again" in again["stderr"]
  # Replaced by the process's own, private file, which the next process loads.
  assert saved.stat().st_uid == os.geteuid() and saved.stat().st_mode & 0o777 == 0o600
  assert saved_step_in_subprocess(cache)["traces"] == 0


# --- The bound --------------------------------------------------------------------------------------------------


def test_the_bound_comes_from_the_flag_the_environment_or_the_default(monkeypatch):
  monkeypatch.delenv(compile_cache.MAX_MB_ENV, raising=False)
  assert compile_cache.max_bytes() == compile_cache.DEFAULT_MAX_MB * 2**20 == 2 * 2**30
  monkeypatch.setenv(compile_cache.MAX_MB_ENV, "300")
  assert compile_cache.max_bytes() == 300 * 2**20
  assert compile_cache.max_bytes(5) == 5 * 2**20 and compile_cache.max_bytes(0) is None
  monkeypatch.setenv(compile_cache.MAX_MB_ENV, "lots")
  with pytest.raises(ValueError, match="JAXCNN_CACHE_MAX_MB='lots' is not a whole number"):
    compile_cache.max_bytes()
  with pytest.raises(ValueError, match=">= 0 MiB"):
    compile_cache.max_bytes(-1)


def enable_in_subprocess(cache: pathlib.Path, max_mb: str) -> dict:
  extra_env = {compile_cache.ENV: str(cache), compile_cache.MAX_MB_ENV: max_mb}
  result = run_jaxcnn(code=ENABLE_ONLY, extra_env=extra_env, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.splitlines()[-1])


def test_jax_gets_half_the_bound_and_its_older_entries_get_access_times(tmp_path):
  cache = tmp_path / "xla"
  cache.mkdir(mode=0o700)
  (cache / "jit_old-0123-cache").write_bytes(b"x" * 10)  # written while the cache had no bound: no -atime file
  result = enable_in_subprocess(cache, "8")
  assert result == {"dir": str(cache), "jax_max": 4 * 2**20, "jax_on": True}, result
  assert (cache / "jit_old-0123-atime").stat().st_size == 8  # JAX's eviction reads it and fails without it
  assert enable_in_subprocess(cache, "0")["jax_max"] == -1  # no bound
  cache.chmod(0o777)
  assert enable_in_subprocess(cache, "8") == {"dir": "None", "jax_max": -1, "jax_on": False}  # refused: JAX's off


def test_executables_stay_under_the_bound_and_the_most_recently_used_survives(tmp_path, monkeypatch):
  import time

  import jax
  import jax.numpy as jnp

  from jaxcnn import parallel

  monkeypatch.setattr(compile_cache, "_enabled_dir", tmp_path)
  folder = tmp_path / "executables"
  # Over every device, as the steps run (a saved executable is loaded onto all of them).
  x = jax.device_put(jnp.ones(jax.device_count()), parallel.ShardMap().batch_sharding)

  def step(name):  # one program per name; the same name later loads the file
    return compile_cache.SavedExecutable(jax.jit(lambda x: {"y": jnp.sin(x) * len(name)}), name, "key")

  step("a")(x)
  size = (folder / next(p.name for p in folder.iterdir())).stat().st_size
  budget = int(2.5 * size)  # room for two
  monkeypatch.setattr(compile_cache, "_executables_budget", budget)
  time.sleep(0.05)
  step("b")(x)
  time.sleep(0.05)
  with compile_cache.watch() as seen:
    step("a")(x)  # loaded: now the most recently used
  assert seen.loaded == 1
  time.sleep(0.05)
  kept = []
  for name in ("c", "d", "e"):  # more than fits
    step(name)(x)
    files = list(folder.iterdir())
    assert sum(p.stat().st_size for p in files) <= budget, files
    kept.append(sorted(p.name.split("-")[0] for p in files))
    time.sleep(0.05)
  assert kept == [["a", "c"], ["c", "d"], ["d", "e"]]  # b went first: saved after a, but a was used since
  with compile_cache.watch() as seen:
    step("d")(x)
    step("a")(x)  # evicted: compiled again
  assert (seen.loaded, seen.saved) == (1, 1)
  assert sorted(p.name.split("-")[0] for p in folder.iterdir()) == ["a", "d"]  # e was the least recently used


# --- The train step's key ---------------------------------------------------------------------------------------

# For each config field left out of the train step's key: another value, and (where the field only matters beside
# others) the setting it is changed in. Under the schedule inside the step, each of the schedule's fields changed the
# program in its setting (checked below): so the test could fail.
BASE = {"schedule": "step", "lr_boundaries_epochs": (1,), "warmup_steps": 2, "warmup_init_lr": 0.01}
OTHER_VALUES = {
  "num_epochs": (7, {"schedule": "cosine"}),
  "data_dir": (None, {}),  # a copy of the data elsewhere
  "validation_size": (30, {"schedule": "cosine"}),  # 270 training images: 8 steps per epoch, not 7
  "validation_fraction": (0.5, {"schedule": "cosine"}),
  "learning_rate": (0.2, {}),
  "lr_reference_batch_size": (64, {}),
  "schedule": ("exponential", {}),
  "lr_boundaries_epochs": ((1, 2), {}),
  "lr_boundaries_steps": ((5,), {}),
  "lr_decay_factor": (0.5, {}),
  "lr_decay_every_epochs": (2.0, {"schedule": "exponential"}),
  "warmup_epochs": (1.0, {}),
  "warmup_steps": (3, {}),
  "warmup_mode": ("constant", {}),
  "warmup_init_lr": (0.02, {}),
  "plateau_metric": ("validation_loss", {}),
  "plateau_factor": (0.5, {}),
  "plateau_patience": (5, {}),
  "plateau_min_delta": (0.01, {}),
  "plateau_max_reductions": (3, {}),
  "early_stopping_patience": (3, {}),
  "early_stopping_min_delta": (0.01, {}),
  "stop_at_accuracy": (0.9, {}),
  "eval_split": ("validation", {}),
  "eval_weights": ("ema", {}),
  "eval_batch_size": (32, {}),
  "init_from": ("/elsewhere/run", {}),
  "init_step": (3, {}),
  "seed": (7, {}),
  "checkpoint_max_to_keep": (1, {}),
  "checkpoint_keep_best": (0, {}),
  "checkpoint_best_metric": ("validation_loss", {}),
  "checkpoint_every_steps": (5, {}),
  "log_every_steps": (3, {}),
  "step_timeout_seconds": (60.0, {}),
  "first_step_timeout_seconds": (60.0, {}),
}
SCHEDULE_FIELDS = {f for f in OTHER_VALUES if f not in ("data_dir", "seed") and OTHER_VALUES[f][1] != {}} | {
  "learning_rate",
  "lr_reference_batch_size",
  "schedule",
  "lr_boundaries_epochs",
  "lr_boundaries_steps",
  "lr_decay_factor",
  "warmup_epochs",
  "warmup_steps",
  "warmup_mode",
  "warmup_init_lr",
}


def lowered_train_step(config, workdir, rate_in_batch: bool = True) -> str:
  """The train step as train_and_evaluate builds it for `config`, lowered to text (nothing is compiled)."""
  import functools

  import jax

  from jaxcnn import train

  run = train.Run(config, workdir)
  run.checkpointer.close()
  assert run.strategy.name == "pmap"
  step = run.strategy.compile(functools.partial(train.train_step, options=run.step_options), donate_state=True)
  batch = run.train_batch_spec()
  if not rate_in_batch:  # the schedule inside the step, as before
    batch.pop("learning_rate")
  count, sharding = jax.local_device_count(), run.strategy._sharding  # as Pmap.put_state places the state
  state = jax.tree.map(
    lambda x: jax.ShapeDtypeStruct((count, *x.shape), x.dtype, sharding=sharding), jax.eval_shape(run.make_state)
  )
  return step.lower(state, batch).as_text()


def test_config_fields_left_out_of_the_train_steps_key_do_not_change_the_step(tiny_config, tmp_path):
  import shutil

  from jaxcnn import train

  assert set(OTHER_VALUES) == set(train.TRAIN_STEP_UNKEYED)  # each field listed comes with a value to try
  tiny_config.update(BASE)
  data_copy = tmp_path / "data_copy"
  shutil.copytree(tiny_config.data_dir, data_copy)
  lowered, workdirs = {}, iter(range(1000))
  lower = lambda config, rate_in_batch=True: lowered_train_step(config, tmp_path / f"w{next(workdirs)}", rate_in_batch)
  for field, (value, setting) in OTHER_VALUES.items():
    base = tiny_config.copy_and_resolve_references()
    base.update(setting)
    other = base.copy_and_resolve_references()
    other[field] = str(data_copy) if field == "data_dir" else value
    assert other[field] != base[field], field
    assert train.train_step_key(other) == train.train_step_key(base), field
    for rate_in_batch in (True, False) if field in SCHEDULE_FIELDS else (True,):
      key = (json.dumps(setting, sort_keys=True), rate_in_batch)
      if key not in lowered:
        lowered[key] = lower(base, rate_in_batch)
      texts = [lowered[key], lower(other, rate_in_batch)]
      if rate_in_batch:
        assert texts[0] == texts[1], f"{field} changes the compiled train step: it must stay in its key"
      else:  # the value tried would have changed the step whose schedule was inside it
        assert texts[0] != texts[1], f"{field}={value!r} in {setting} did not change the schedule: try another"
  # What the unkeyed fields still decide (a constant rate is multiplied into the plateau factor first, as XLA did
  # with the constant inside the step) is in the key.
  for schedule in ("plateau", "constant"):
    constant = tiny_config.copy_and_resolve_references()
    constant.update(schedule=schedule, warmup_epochs=0.0, warmup_steps=0)
    varying = constant.copy_and_resolve_references()
    varying.schedule = "cosine"
    assert lower(constant) != lower(varying)
    assert train.train_step_key(constant) != train.train_step_key(varying)
  # A field in the key changes the step (a check of the comparison itself).
  changed = tiny_config.copy_and_resolve_references()
  changed.label_smoothing = 0.25  # lenet5 has 0.1
  assert lower(changed) != lowered[("{}", True)]


@pytest.mark.slow
def test_a_second_run_with_another_num_epochs_loads_the_saved_train_step(tmp_path, tiny_args):
  cache = tmp_path / "cache"  # this test's own
  common = [*tiny_args, "--config.validation_size=0", f"--compilation_cache_dir={cache}"]
  first = run_jaxcnn(*common, f"--workdir={tmp_path / 'one'}", "--config.num_epochs=1")
  assert first.returncode == 0, first.stderr[-3000:]
  assert f"  train step: compiled (compilation cache {cache})" in first.stdout, first.stdout
  second = run_jaxcnn(*common, f"--workdir={tmp_path / 'two'}", "--config.num_epochs=3")
  assert second.returncode == 0, second.stderr[-3000:]
  loaded = f"  train step: loaded from the compilation cache {cache} (a saved executable: not traced or compiled)"
  assert loaded in second.stdout, second.stdout
  assert [p.name.split("-")[0] for p in (cache / "executables").iterdir()].count("train_step") == 1
