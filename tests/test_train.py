import json

import jax
import numpy as np
import pytest
from conftest import config_of, single_device_steps, train_steps

from jaxcnn import checkpoint, data, evaluate, models, optim, parallel, train


def _tree_allclose(a, b, atol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def _state_and_batch(config):
  dataset = data.load(config)
  mean, std = data.channel_stats(dataset.splits["train"])
  batch = next(
    data.train_batches(dataset.splits["train"], global_batch=config.batch_size, seed=0, epoch=0, mean=mean, std=std)
  )
  model = models.create(config.model, num_classes=10)
  state = train.create_train_state(config, model, dataset.image_shape, optim.create(config, steps_per_epoch=10))
  return state, batch


def test_pmap_step_over_8_devices_equals_one_device_step_on_the_global_batch(tiny_config):
  tiny_config.warmup_epochs = 0.0  # a linear warm-up starts at lr 0: the first step would not move the weights
  state, batch = _state_and_batch(tiny_config)  # batch is [32, ...]
  state8, sums8 = train_steps(parallel.Pmap(), state, [batch])
  state1, sums1 = single_device_steps(state, [batch])
  _tree_allclose(state8.params, state1.params, atol=1e-5)
  assert float(sums8["count"]) == float(sums1["count"]) == tiny_config.batch_size
  np.testing.assert_allclose(float(sums8["loss"]), float(sums1["loss"]), rtol=1e-5)
  # The step actually moved the weights.
  assert not np.allclose(np.asarray(state8.params["c1"]["kernel"]), np.asarray(state.params["c1"]["kernel"]))


def test_checkpoint_round_trip_restores_params_optimizer_step_and_rng(tiny_config, tmp_path):
  state, batch = _state_and_batch(tiny_config)
  stepped, _ = train_steps(parallel.Pmap(), state, [batch])
  ckpt = checkpoint.Checkpointer(tmp_path / "ckpt")
  ckpt.save(1, stepped, {"epoch": 1})
  ckpt.close()
  restored, meta = checkpoint.Checkpointer(tmp_path / "ckpt").restore(state)
  assert meta == {"epoch": 1}
  assert int(restored.step) == 1
  for name in ("params", "opt_state", "rng"):
    for x, y in zip(jax.tree.leaves(getattr(restored, name)), jax.tree.leaves(getattr(stepped, name))):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert jax.tree.structure(restored.opt_state) == jax.tree.structure(stepped.opt_state)


def test_restore_of_a_missing_step_names_the_available_ones(tiny_config, tmp_path):
  state, _ = _state_and_batch(tiny_config)
  ckpt = checkpoint.Checkpointer(tmp_path / "ckpt")
  ckpt.save(3, state, {})
  ckpt.close()
  with pytest.raises(ValueError, match=r"no checkpoint for step 5.*\[3\]"):
    checkpoint.Checkpointer(tmp_path / "ckpt").restore(state, step=5)


def _final_params(workdir, config):
  run = train.Run(config, workdir)
  state, _ = run.restore()
  run.checkpointer.close()
  return state


@pytest.mark.slow
def test_stopped_run_resumes_and_ends_where_an_uninterrupted_run_ends(tiny_config, tmp_path):
  tiny_config.num_epochs = 3
  full = train.train_and_evaluate(tiny_config, tmp_path / "full")

  train.train_and_evaluate(tiny_config, tmp_path / "resumed", epochs_per_run=1)  # stopped after epoch 1 ...
  resumed = train.train_and_evaluate(tiny_config, tmp_path / "resumed")  # ... restarted with the full plan

  lines = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in lines] == [1, 2, 3]  # continued at epoch 2, no epoch repeated
  assert resumed["step"] == full["step"]
  _tree_allclose(
    _final_params(tmp_path / "resumed", tiny_config).params,
    _final_params(tmp_path / "full", tiny_config).params,
    atol=1e-6,
  )
  assert resumed["validation_top1_accuracy"] == full["validation_top1_accuracy"]


@pytest.mark.slow
def test_eval_from_checkpoint_reproduces_training_accuracy_on_the_whole_split(tiny_config, tmp_path):
  tiny_config.num_epochs = 3
  tiny_config.ema_decay = 0.9  # the averaged weights are validated (and evaluated below) too
  record = train.train_and_evaluate(tiny_config, tmp_path)
  assert record["validation_top1_accuracy"] > 0.5  # the tiny task is learnable; the model learned it

  tiny_config.eval_split = "validation"
  results = evaluate.evaluate_checkpoint(tiny_config, tmp_path)
  assert results["top1_accuracy"] == pytest.approx(record["validation_top1_accuracy"], abs=1e-6)
  assert results["loss"] == pytest.approx(record["validation_loss"], rel=1e-5)
  tiny_config.eval_weights = "ema"
  tiny_config.optimizer = "adam"  # eval reads the weights only: another optimizer state's layout is no matter
  results = evaluate.evaluate_checkpoint(tiny_config, tmp_path)
  assert results["top1_accuracy"] == pytest.approx(record["ema_validation_top1_accuracy"], abs=1e-6)
  assert results["loss"] == pytest.approx(record["ema_validation_loss"], rel=1e-5)
  tiny_config.eval_weights = "raw"

  tiny_config.eval_split = "test"  # 203 examples, eval batch 64: the last batch is padded and masked
  results = evaluate.evaluate_checkpoint(tiny_config, tmp_path)
  assert results["num_examples"] == 203
  written = json.loads((tmp_path / "eval_results.json").read_text())
  assert {"split", "step", "num_examples", "loss", "top1_accuracy", "top5_accuracy"} <= set(written)
  assert written["split"] == "test" and written["step"] == record["step"]
  assert 0.0 <= written["top1_accuracy"] <= written["top5_accuracy"] <= 1.0


@pytest.mark.slow
def test_stop_at_accuracy_ends_the_run_after_the_first_epoch_that_reaches_it(tiny_config, tmp_path, capsys):
  tiny_config.num_epochs = 3
  # Above chance (10 classes: 0.1): the tiny run validates at ~0.77 after epoch 1 and 1.0 after epoch 2.
  tiny_config.stop_at_accuracy = 0.9
  record = train.train_and_evaluate(tiny_config, tmp_path)
  assert record["epoch"] == 2 and record["step"] == 14 and record["stopped_at_accuracy"] is True
  assert record["validation_top1_accuracy"] >= 0.9
  epochs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [e["epoch"] for e in epochs] == [1, 2] and epochs[0]["validation_top1_accuracy"] < 0.9  # not one early
  assert "reached stop_at_accuracy 90.00% after epoch 2" in capsys.readouterr().out
  checkpointer = checkpoint.Checkpointer(tmp_path / "checkpoints")
  assert checkpointer.latest_step() == record["step"]  # the final checkpoint, as at any epoch's end
  checkpointer.close()

  again = train.train_and_evaluate(tiny_config, tmp_path)  # a resumed run does not train further
  assert again == record
  assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_stop_at_accuracy_needs_a_validation_split_and_a_fraction(tiny_config, tmp_path):
  tiny_config.stop_at_accuracy = 0.9
  tiny_config.validation_size = 0
  with pytest.raises(ValueError, match="no split 'validation'.*validation_size"):
    train.train_and_evaluate(tiny_config, tmp_path)
  tiny_config.stop_at_accuracy = 90.0  # a percentage, not a fraction
  with pytest.raises(ValueError, match=r"stop_at_accuracy is a fraction in \[0, 1\]"):
    train.train_and_evaluate(tiny_config, tmp_path)


@pytest.mark.slow
def test_a_stop_request_at_an_epochs_last_batch_saves_that_epochs_end(tiny_config, tmp_path, monkeypatch, capsys):
  from jaxcnn import preemption

  batches_flagged = []
  plain_flags = preemption.StopRequests.flags

  def sigterm_with_batch_7(self, num_examples):  # 7 steps per epoch: the request rides on the epoch's last batch
    batches_flagged.append(num_examples)
    if len(batches_flagged) == 7:
      self.signal_name = "SIGTERM"
    return plain_flags(self, num_examples)

  monkeypatch.setattr(preemption.StopRequests, "flags", sigterm_with_batch_7)
  record = train.train_and_evaluate(tiny_config, tmp_path)
  assert record["epoch"] == 1 and "validation_top1_accuracy" in record  # the epoch's end ran, validation included
  assert "SIGTERM: saved step 7 (epoch 1, batch 7)" in capsys.readouterr().out
  checkpointer = checkpoint.Checkpointer(tmp_path / "checkpoints")
  assert checkpointer.steps() == [7]
  checkpointer.close()
  assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


# One model of each kind of initialiser the zoo uses: LeCun normal, the 1998 uniform fan-in, AlexNet's N(0, 0.01) with
# its constant biases, He normal (variance scaling, VGG's and GoogLeNet's kind too), BatchNorm's ones and zeros.
@pytest.mark.parametrize("name", ["lenet5", "lenet5_1998", "mlp", "alexnet", "resnet20"])
def test_a_fresh_state_is_the_same_at_the_fast_compiling_level(name, monkeypatch):
  config = config_of(ema_decay=0.999)  # the moving average's copy is part of the state too
  model = models.create(name, num_classes=10)
  side = model.smallest_input()
  shape = (side, side, 1 if name.startswith("lenet") else 3)
  tx = optim.create(config, steps_per_epoch=10)
  fast = train.create_train_state(config, model, shape, tx)
  monkeypatch.setattr(train, "STATE_COMPILER_OPTIONS", {})  # XLA's default level
  default = train.create_train_state(config, model, shape, tx)
  assert jax.tree.structure(fast) == jax.tree.structure(default)
  for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(default)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert np.asarray(fast.step).dtype == np.int32 and int(fast.step) == 0
