"""The papers' training recipes: schedules at their boundary steps, the plateau rule, EMA, accumulation, precision,
and the two data-parallel strategies against a single device."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import config_of, single_device_steps, train_steps

from jaxcnn import optim, parallel, train
from jaxcnn.models import layers

# The default job's half-epoch warm-up and Nesterov momentum off: each test states its own recipe.
RECIPE_BASE = {"warmup_epochs": 0.0, "nesterov": False}


def test_step_schedule_divides_at_the_configured_epochs():
  config = config_of(RECIPE_BASE, schedule="step", learning_rate=0.1, lr_boundaries_epochs=(30, 60), num_epochs=90)
  schedule = optim.learning_rate_schedule(config, steps_per_epoch=100)
  assert float(schedule(2999)) == pytest.approx(0.1)
  assert float(schedule(3000)) == pytest.approx(0.01)
  assert float(schedule(5999)) == pytest.approx(0.01)
  assert float(schedule(6000)) == pytest.approx(0.001)


def test_resnet_cifar_schedule_with_constant_warmup():
  """ResNet-110 (He et al. Sec. 4.2): 0.01 until ~400 iterations, then 0.1, /10 at 32k and 48k."""
  config = config_of(
    RECIPE_BASE,
    schedule="step",
    learning_rate=0.1,
    lr_boundaries_steps=(32000, 48000),
    warmup_steps=400,
    warmup_mode="constant",
    warmup_init_lr=0.01,
    num_epochs=164,
  )
  schedule = optim.learning_rate_schedule(config, steps_per_epoch=391)
  assert [float(schedule(s)) for s in (0, 399, 400, 31999, 32000, 47999, 48000)] == pytest.approx(
    [0.01, 0.01, 0.1, 0.1, 0.01, 0.01, 0.001]
  )


def test_googlenet_schedule_loses_4_percent_every_8_epochs():
  config = config_of(
    RECIPE_BASE, schedule="exponential", learning_rate=0.01, lr_decay_factor=0.96, lr_decay_every_epochs=8
  )
  schedule = optim.learning_rate_schedule(config, steps_per_epoch=10)
  assert [float(schedule(s)) for s in (0, 79, 80, 159, 160)] == pytest.approx(
    [0.01, 0.01, 0.0096, 0.0096, 0.01 * 0.96**2]
  )


def test_linear_warmup_then_cosine_and_batch_scaling():
  config = config_of(
    RECIPE_BASE,
    schedule="cosine",
    learning_rate=0.1,
    warmup_epochs=1,
    num_epochs=11,
    batch_size=512,
    lr_reference_batch_size=256,
  )
  schedule = optim.learning_rate_schedule(config, steps_per_epoch=10)
  assert float(schedule(0)) == pytest.approx(0.0)
  assert float(schedule(5)) == pytest.approx(0.1)  # half-way up to 0.2
  # The cosine starts at the warm-up's end: no drop there, and only the last step reaches zero.
  assert float(schedule(9)) == pytest.approx(0.2 * 9 / 10) and float(schedule(10)) == pytest.approx(0.2)
  assert float(schedule(35)) == pytest.approx(0.2 * 0.5 * (1 + np.cos(np.pi * 25 / 100)))
  assert float(schedule(60)) == pytest.approx(0.1)
  assert float(schedule(109)) > 0 and float(schedule(110)) == pytest.approx(0.0, abs=1e-7)


def test_reduce_on_plateau_divides_after_the_patience_and_stops_after_max_reductions():
  plateau = optim.ReduceOnPlateau(factor=0.1, patience=2, min_delta=0.0, max_reductions=2)
  errors = [0.5, 0.4, 0.41, 0.40, 0.42, 0.3, 0.31, 0.31, 0.31, 0.31, 0.31, 0.31]
  decisions = [plateau.update(e) for e in errors]
  # epochs 3 and 4 are the two bad epochs of patience; epoch 5 is the third -> divide.
  assert [i for i, d in enumerate(decisions) if d] == [4, 8]
  assert plateau.reductions == 2  # the third plateau (epochs 9..11) does not divide again


def test_lr_factor_scales_the_updates_and_is_stored_in_the_optimizer_state():
  config = config_of(RECIPE_BASE, schedule="constant", learning_rate=1.0, momentum=0.0, weight_decay=0.0)
  tx = optim.create(config, steps_per_epoch=1)
  params = {"w": jnp.ones(3)}
  opt_state = optim.set_lr_factor(tx.init(params), 0.1)
  updates, _ = tx.update({"w": jnp.ones(3)}, opt_state, params)
  np.testing.assert_allclose(updates["w"], -0.1 * np.ones(3), rtol=1e-6)
  assert optim.lr_factor(opt_state) == pytest.approx(0.1)
  # With parameter groups (fine-tuning), every group's chain carries a factor: all of them move together.
  grouped = optim.create(
    config_of(
      RECIPE_BASE, schedule="constant", learning_rate=1.0, momentum=0.0, weight_decay=0.0, backbone_lr_multiplier=0.5
    ),
    1,
    lambda p: {"w": "backbone", "v": "head"},
  )
  params = {"w": jnp.ones(3), "v": jnp.ones(3)}
  state = optim.set_lr_factor(grouped.init(params), 0.1)
  updates, _ = grouped.update({"w": jnp.ones(3), "v": jnp.ones(3)}, state, params)
  np.testing.assert_allclose(updates["w"], -0.05 * np.ones(3), rtol=1e-6)
  np.testing.assert_allclose(updates["v"], -0.1 * np.ones(3), rtol=1e-6)
  assert optim.lr_factor(state) == pytest.approx(0.1)


def test_coupled_and_decoupled_weight_decay_and_the_bias_exemption():
  params = {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.full((2,), 2.0)}
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  coupled = optim.create(
    config_of(RECIPE_BASE, schedule="constant", learning_rate=0.1, momentum=0.9, weight_decay=0.5), 1
  )
  state = coupled.init(params)
  updates, state = coupled.update(zero_grads, state, params)
  np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * 2.0)  # v = wd*w; update = -lr*v
  updates, _ = coupled.update(zero_grads, state, params)
  np.testing.assert_allclose(updates["kernel"], -0.1 * (0.9 * 1.0 + 1.0))  # the decay went into momentum
  decoupled = optim.create(
    config_of(
      RECIPE_BASE,
      schedule="constant",
      learning_rate=0.1,
      momentum=0.9,
      weight_decay=0.5,
      weight_decay_mode="decoupled",
      decay_biases_and_norms=False,
    ),
    1,
  )
  state = decoupled.init(params)
  for _ in range(2):
    updates, state = decoupled.update(zero_grads, state, params)
  np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * 2.0)  # no momentum on the decay
  np.testing.assert_allclose(updates["bias"], 0.0)  # exempt


def test_adamw_matches_optax_adamw():
  params = {"w": jnp.linspace(-1, 1, 6).reshape(2, 3)}
  grads = {"w": jnp.linspace(0.5, -0.5, 6).reshape(2, 3)}
  ours = optim.create(
    config_of(
      RECIPE_BASE,
      optimizer="adamw",
      schedule="constant",
      learning_rate=1e-3,
      weight_decay=0.01,
      weight_decay_mode="decoupled",
    ),
    1,
  )
  reference = optax.adamw(1e-3, weight_decay=0.01)
  s1, s2 = ours.init(params), reference.init(params)
  for _ in range(3):
    u1, s1 = ours.update(grads, s1, params)
    u2, s2 = reference.update(grads, s2, params)
    np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-6, atol=1e-9)


class TinyBatchNormNet(nn.Module):
  """A conv + cross-replica BatchNorm + dense net: enough to show BatchNorm agrees across strategies."""

  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(4, (3, 3), strides=2)(x)
    x = layers.batch_norm(train)(x)  # the zoo's BatchNorm: cross-replica inside the train step
    x = nn.relu(x).mean(axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


class TinyLinearNet(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    return nn.Dense(10)(x.reshape(x.shape[0], -1))


def _toy_state(config, model=None):
  model = model or TinyBatchNormNet()
  return train.create_train_state(config, model, (8, 8, 1), optim.create(config, steps_per_epoch=10))


def _toy_batches(steps, global_batch=32, seed=0):
  rng = np.random.default_rng(seed)
  return [
    {
      "image": rng.normal(size=(global_batch, 8, 8, 1)).astype(np.float32),
      "label": rng.integers(0, 10, global_batch).astype(np.int32),
    }
    for _ in range(steps)
  ]


def _assert_trees_close(a, b, atol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=0)


def test_pmap_shard_map_and_one_device_agree_after_3_steps_batchnorm_included():
  config = config_of(RECIPE_BASE, schedule="constant", learning_rate=0.1)
  state, batches = _toy_state(config), _toy_batches(3)
  by_pmap, _ = train_steps(parallel.Pmap(), state, batches)
  by_shard_map, _ = train_steps(parallel.ShardMap(), state, batches)
  reference, _ = single_device_steps(state, batches)
  for result in (by_pmap, by_shard_map):
    _assert_trees_close(result.params, reference.params, atol=1e-5)
    _assert_trees_close(result.batch_stats, reference.batch_stats, atol=1e-5)
    assert int(result.step) == 3
  assert not np.allclose(reference.batch_stats["BatchNorm_0"]["mean"], 0)  # statistics were updated


def test_gradient_accumulation_equals_one_larger_batch():
  config = config_of(RECIPE_BASE, schedule="constant", learning_rate=0.1)
  # Without BatchNorm: micro-batches would see their own batch statistics, by design.
  state, batches = _toy_state(config, TinyLinearNet()), _toy_batches(2, global_batch=64)
  once, _ = train_steps(parallel.Pmap(), state, batches)
  accumulated, _ = train_steps(parallel.Pmap(), state, batches, train.StepOptions(grad_accum_steps=4))
  _assert_trees_close(accumulated.params, once.params, atol=1e-6)


def test_ema_weights_equal_the_closed_form_average():
  config = config_of(RECIPE_BASE, schedule="constant", learning_rate=0.1, ema_decay=0.9)
  state, batches = _toy_state(config), _toy_batches(1)
  trajectory = [state.params]
  options = train.StepOptions(ema_decay=0.9)
  for k in range(1, 4):
    trajectory.append(train_steps(parallel.Pmap(), state, batches * k, options)[0].params)
  final, _ = train_steps(parallel.Pmap(), state, batches * 3, options)
  # e_k = d*e_{k-1} + (1-d)*p_k with e_0 = p_0: e_3 = d^3 p_0 + sum_k (1-d) d^(3-k) p_k.
  expected = jax.tree.map(lambda p0, p1, p2, p3: 0.9**3 * p0 + 0.1 * (0.9**2 * p1 + 0.9 * p2 + p3), *trajectory)
  _assert_trees_close(final.ema_params, expected, atol=1e-6)


@pytest.mark.slow
def test_bfloat16_training_reaches_the_float32_accuracy(tiny_config, tmp_path):
  tiny_config.num_epochs = 3
  fp32 = train.train_and_evaluate(tiny_config, tmp_path / "fp32")
  tiny_config.compute_dtype = "bfloat16"
  bf16 = train.train_and_evaluate(tiny_config, tmp_path / "bf16")
  assert fp32["validation_top1_accuracy"] > 0.6
  # Stated tolerance: within 5 points on the 60-image validation split (3 images).
  assert bf16["validation_top1_accuracy"] >= fp32["validation_top1_accuracy"] - 0.05
