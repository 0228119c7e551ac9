"""The two-tower AlexNet over two devices computes the grouped AlexNet's function (Section 3.2)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

from jaxcnn import model_parallel, models


def assert_split_over_the_towers(placed, params):
  """Every leaf of `placed` is `params`' leaf split along its output channels, one half on each of two devices."""
  for (path, leaf), full in zip(jax.tree_util.tree_leaves_with_path(placed), jax.tree.leaves(params), strict=True):
    assert leaf.shape == full.shape and leaf.sharding.spec[-1] == model_parallel.TOWER, path
    halves = sorted(leaf.addressable_shards, key=lambda shard: shard.index[-1].start or 0)
    assert [shard.device for shard in halves] == jax.devices()[:2], path
    assert all(shard.data.shape[-1] == full.shape[-1] // 2 for shard in halves), path


@pytest.mark.parametrize(
  "size", [32, 67]
)  # the small-input stem, and the paper's 11x11/4 stem (67 -> 15 -> 7 -> 3 -> 1)
def test_two_towers_on_two_devices_equal_the_grouped_model(size):
  model = models.create("alexnet_grouped", num_classes=10)
  images = jax.random.normal(jax.random.PRNGKey(1), (4, size, size, 3))
  labels = jnp.arange(4) % 10
  params = model.init(jax.random.PRNGKey(0), images)["params"]
  # The paper's N(0, 0.01) weights make every logit ~0; He-scaled weights give O(1) logits to compare.
  params = jax.tree.map(lambda p: p * np.sqrt(2 / np.prod(p.shape[:-1])) / 0.01 if p.ndim > 1 else p, params)
  mesh = model_parallel.tower_mesh()
  placed = model_parallel.place(params, mesh)
  assert_split_over_the_towers(placed, params)
  assert placed["conv2"]["kernel"].addressable_shards[0].data.shape[-1] == 128  # half the kernels per device

  def loss(forward, p):
    return optax.softmax_cross_entropy_with_integer_labels(forward(p), labels).mean()

  grouped = lambda p: model.apply({"params": p}, images, train=False)  # noqa: E731
  towers = jax.jit(lambda p: model_parallel.forward(p, images, mesh))
  logits = towers(placed)
  assert logits.sharding.spec == P(None, model_parallel.TOWER)  # each tower computes half of the classes
  np.testing.assert_allclose(np.asarray(logits), np.asarray(grouped(params)), rtol=1e-4, atol=1e-4)
  assert 0.1 < float(jnp.std(grouped(params))) < 1e3  # a meaningful, finite output

  # Both compiled: on jax 0.12 the op-by-op (eager) gradient of the grouped convolutions differs from the
  # compiled one by up to 1e-2 of the largest entry (conv5), while compiled grouped and towers agree to 1e-5.
  grads_grouped = jax.jit(jax.grad(lambda p: loss(grouped, p)))(params)
  grads_towers = jax.jit(jax.grad(lambda p: loss(lambda q: model_parallel.forward(q, images, mesh), p)))(placed)
  assert_split_over_the_towers(grads_towers, params)
  for g_t, g_g in zip(jax.tree.leaves(grads_towers), jax.tree.leaves(grads_grouped), strict=True):
    scale = float(jnp.max(jnp.abs(g_g))) + 1e-12
    np.testing.assert_allclose(np.asarray(g_t) / scale, np.asarray(g_g) / scale, atol=1e-4)


def test_the_towers_exchange_maps_only_before_conv3_and_the_fc_layers():
  """Section 3.2: "the GPUs communicate only in certain layers"; the program's only collectives are the four
  gathers of both towers' maps, which conv3, fc6, fc7 and fc8 read."""
  model = models.create("alexnet_grouped", num_classes=10)
  images = jnp.zeros((2, 32, 32, 3))
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), images))["params"]
  mesh = model_parallel.tower_mesh()
  program = jax.jit(lambda p: model_parallel.forward(p, images, mesh)).lower(params).as_text()
  collectives = re.findall(r'"stablehlo\.(all_[a-z_]+|collective_[a-z_]+|reduce_scatter)"', program)
  assert collectives == ["all_gather"] * 4
  gathered = re.findall(r'"stablehlo\.all_gather".*-> tensor<([0-9x]+)xf32>', program)
  # conv3 reads the 7x7 maps after two pools, fc6 the 3x3 ones after the third, fc7 and fc8 all 4096 units.
  assert gathered == ["2x7x7x256", "2x3x3x256", "2x4096", "2x4096"]


def test_lrn_stays_within_each_tower():
  """A change in tower 2's conv1 maps must not move tower 1's normalised maps (the grouped model's LRN)."""
  model = models.create("alexnet_grouped", num_classes=10, dropout_rate=0.0)
  images = jax.random.normal(jax.random.PRNGKey(1), (2, 32, 32, 3))
  params = model.init(jax.random.PRNGKey(0), images)["params"]
  capture = lambda p: model.apply(
    {"params": p},
    images,
    capture_intermediates=True,  # noqa: E731
    mutable=["intermediates"],
  )[1]["intermediates"]
  changed = jax.tree.map(lambda x: x, params)
  changed["conv1"]["kernel"] = params["conv1"]["kernel"].at[..., 48:].multiply(5.0)
  before = capture(params)["LocalResponseNorm_0"]["__call__"][0]
  after = capture(changed)["LocalResponseNorm_0"]["__call__"][0]
  np.testing.assert_allclose(np.asarray(before[..., :48]), np.asarray(after[..., :48]), rtol=1e-6)


def test_two_towers_need_two_devices():
  with pytest.raises(ValueError, match="exactly 2 devices"):
    model_parallel.tower_mesh(jax.devices()[:3])
