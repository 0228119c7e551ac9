"""Transfer learning: a new head on another run's backbone, frozen or fine-tuned."""

import functools

import flax.linen as nn
import jax
import numpy as np
import pytest
from conftest import config_of, train_steps

from jaxcnn import optim, parallel, train, transfer
from jaxcnn.models import layers


class BatchNormNet(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(4, (3, 3), strides=2, name="conv")(x)
    x = layers.batch_norm(train, name="bn")(x)
    x = nn.relu(x).mean(axis=(1, 2))
    return nn.Dense(self.num_classes, name="classifier")(x)


def test_head_modules_are_the_class_outputs_and_aux_heads():
  params = {
    "conv": {"kernel": np.zeros((3, 3, 1, 5))},
    "aux1": {"fc": {"kernel": np.zeros((8, 7))}},
    "classifier": {"kernel": np.zeros((4, 5)), "bias": np.zeros(5)},
  }
  assert transfer.head_modules(params, num_classes=5) == {("classifier",), ("aux1",)}
  groups = transfer.parameter_groups(params, num_classes=5)
  assert groups == {
    "conv": {"kernel": "backbone"},
    "aux1": {"fc": {"kernel": "head"}},
    "classifier": {"kernel": "head", "bias": "head"},
  }


@pytest.mark.parametrize(
  ("fields", "line"),
  [
    ({}, None),  # no transfer: no line
    ({"init_from": "W1"}, "from W1's latest checkpoint, trained at 1x the learning rate"),
    ({"init_from": "W1", "init_step": 40, "freeze_backbone": True}, "from W1's step 40, frozen"),
    (
      {"init_from": "W1", "backbone_lr_multiplier": 0.1},
      "from W1's latest checkpoint, trained at 0.1x the learning rate",
    ),
    ({"freeze_backbone": True}, "initialised at random, frozen"),
  ],
)
def test_the_start_line_says_where_the_backbone_comes_from_and_how_it_trains(fields, line):
  """Counts with aux heads too: an aux classifier is head, whatever its outputs."""
  params = {
    "conv": {"kernel": np.zeros((3, 3, 1, 5)), "bias": np.zeros(5)},
    "aux1": {"fc": {"kernel": np.zeros((8, 7))}},
    "classifier": {"kernel": np.zeros((4, 5)), "bias": np.zeros(5)},
  }
  described = transfer.describe(config_of(**fields), params, num_classes=5)
  if line is None:
    assert described == []
  else:
    assert described == [f"transfer: backbone (50 parameters) {line}; new head aux1, classifier (81 parameters)"]


def _batches(steps, num_classes, seed):
  rng = np.random.default_rng(seed)
  return [
    {
      "image": rng.normal(size=(16, 8, 8, 1)).astype(np.float32),
      "label": rng.integers(0, num_classes, 16).astype(np.int32),
    }
    for _ in range(steps)
  ]


@pytest.mark.parametrize("freeze", [True, False])
def test_frozen_backbone_keeps_params_and_statistics_while_the_head_learns(freeze):
  config = config_of(
    schedule="constant", learning_rate=0.1, freeze_backbone=freeze, backbone_lr_multiplier=1.0 if freeze else 0.1
  )
  groups = functools.partial(transfer.parameter_groups, num_classes=3)
  state = train.create_train_state(config, BatchNormNet(3), (8, 8, 1), optim.create(config, 10, groups))
  state = state.replace(batch_stats=jax.tree.map(lambda x: x + 0.5, state.batch_stats))  # "pretrained" stats
  trained, _ = train_steps(parallel.Pmap(), state, _batches(3, 3, 0), train.StepOptions.from_config(config))
  same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))  # noqa: E731
  assert not same(trained.params["classifier"], state.params["classifier"])  # the head learns
  assert same(trained.params["conv"], state.params["conv"]) == freeze
  assert same(trained.params["bn"], state.params["bn"]) == freeze
  assert same(trained.batch_stats, state.batch_stats) == freeze


BACKBONE, HEAD = ("c1", "c3", "c5", "f6"), "output"  # LeNet-5's layers: the head is its class outputs


@pytest.mark.slow
def test_transfer_from_a_run_on_other_classes(tiny_config, tmp_path, monkeypatch):
  tiny_config.classes = (0, 1, 2, 3, 4)
  tiny_config.num_epochs = 2
  # Plain cross-entropy at lr 0.05 without warm-up (the default job's half-epoch warm-up is a quarter of this
  # tiny run): two epochs on 5 tiny classes learn enough for the bound.
  tiny_config.update(label_smoothing=0.0, learning_rate=0.05, nesterov=False, warmup_epochs=0.0)
  train.train_and_evaluate(tiny_config, tmp_path / "source")
  source_run = train.Run(tiny_config, tmp_path / "source")
  source, _ = source_run.restore()
  source_run.checkpointer.close()

  starts = []  # the state each new run starts from: what transfer_weights made of its fresh state
  transfer_weights = transfer.transfer_weights
  monkeypatch.setattr(
    transfer, "transfer_weights", lambda *a, **k: starts.append(transfer_weights(*a, **k)) or starts[-1]
  )

  def leaves(params, names):
    return [np.asarray(leaf) for name in names for leaf in jax.tree.leaves(params[name])]

  def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))

  def trained_from_the_source(workdir) -> tuple[dict, object, object]:
    """(the run's record, its start, its end): the backbone started as the source's, the head as a new one."""
    record = train.train_and_evaluate(tiny_config, workdir)
    run = train.Run(tiny_config, workdir)
    end, _ = run.restore()
    run.checkpointer.close()
    start = starts[-1]
    assert same(leaves(start.params, BACKBONE), leaves(source.params, BACKBONE))
    assert start.params[HEAD]["kernel"].shape == (84, len(tiny_config.classes))  # the new classes' outputs
    assert not same(leaves(start.params, [HEAD]), leaves(source.params, [HEAD]))  # initialised, not the source's
    assert not same(leaves(end.params, [HEAD]), leaves(start.params, [HEAD]))  # the head learned
    assert record["epoch"] == 2 and record["validation_top1_accuracy"] > 0.4  # 5 classes: chance is 0.2
    return record, start, end

  tiny_config.classes = (5, 6, 7, 8, 9)
  tiny_config.init_from = str(tmp_path / "source")
  tiny_config.freeze_backbone = True
  _, _, frozen = trained_from_the_source(tmp_path / "frozen")
  assert same(leaves(frozen.params, BACKBONE), leaves(source.params, BACKBONE))  # frozen: not one bit moved

  tiny_config.freeze_backbone, tiny_config.backbone_lr_multiplier = False, 0.1  # fine-tune everything
  _, start, finetuned = trained_from_the_source(tmp_path / "finetune")
  for name in BACKBONE:  # every backbone layer moved, at a tenth of the head's rate
    assert not same(leaves(finetuned.params, [name]), leaves(start.params, [name])), name
  assert len(starts) == 2

  tiny_config.init_from = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError):
    train.train_and_evaluate(tiny_config, tmp_path / "bad")
