"""The model zoo against the papers' tables: parameter counts, per-layer shapes, LRN, auxiliary heads,
dropout, initialisation, multiply-adds, and a forward/backward pass of every model on 8 devices.

Shapes and counts of the ImageNet-size models come from `jax.eval_shape` (nothing is allocated); real
weights are initialised only on small inputs.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn import models, parallel, summary, train
from jaxcnn.configs import default
from jaxcnn.models import layers

IMAGENET, IMAGENET_227, CIFAR, MNIST = (224, 224, 3), (227, 227, 3), (32, 32, 3), (28, 28, 1)

# The papers' and torchvision's parameter counts: (trainable parameters without auxiliary heads, input, classes).
PARAM_COUNTS = {
  "lenet5_1998": (60_000, MNIST, 10),
  "alexnet": (62_378_344, IMAGENET_227, 1000),
  "alexnet_grouped": (60_965_224, IMAGENET_227, 1000),
  "alexnet_owt": (61_100_840, IMAGENET, 1000),
  "vgg11": (132_863_336, IMAGENET, 1000),
  "vgg11_lrn": (132_863_336, IMAGENET, 1000),
  "vgg13": (133_047_848, IMAGENET, 1000),
  "vgg16_c": (133_638_952, IMAGENET, 1000),
  "vgg16": (138_357_544, IMAGENET, 1000),
  "vgg19": (143_667_240, IMAGENET, 1000),
  "vgg11_bn": (132_868_840, IMAGENET, 1000),
  "vgg16_bn": (138_365_992, IMAGENET, 1000),
  "googlenet_bn": (6_624_904, IMAGENET, 1000),
  "resnet18": (11_689_512, IMAGENET, 1000),
  "resnet34": (21_797_672, IMAGENET, 1000),
  "resnet50": (25_557_032, IMAGENET, 1000),
  "resnet101": (44_549_160, IMAGENET, 1000),
  "resnet152": (60_192_808, IMAGENET, 1000),
  "resnet20": (269_722, CIFAR, 10),
  "resnet32": (464_154, CIFAR, 10),
  "resnet56": (853_018, CIFAR, 10),
  "resnet110": (1_727_962, CIFAR, 10),
}

EXPECTED_NAMES = {
  "lenet5",
  "lenet5_1998",
  "alexnet",
  "alexnet_grouped",
  "alexnet_owt",
  "vgg11",
  "vgg13",
  "vgg16",
  "vgg19",
  "vgg11_bn",
  "vgg13_bn",
  "vgg16_bn",
  "vgg19_bn",
  "vgg11_lrn",
  "vgg16_c",
  "googlenet",
  "googlenet_bn",
  "resnet18",
  "resnet34",
  "resnet50",
  "resnet101",
  "resnet152",
  "resnet20",
  "resnet32",
  "resnet44",
  "resnet56",
  "resnet110",
  "resnet1202",
  "mlp",
  "simple_cnn",
}


def shapes(name, image_shape, num_classes, **options):
  model = models.create(name, num_classes=num_classes, **options)
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *image_shape)), train=False))


def count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


@functools.lru_cache(maxsize=4)  # a few models' variables, not all ~30: worker memory stays bounded
def _init(name, image_shape, num_classes, options):
  model = models.create(name, num_classes=num_classes, **dict(options))
  # lazy_init skips the forward pass, and the RngBitGenerator key compiles several times faster on CPU
  # than threefry: GoogLeNet's ~120 initialisers are most of its test time.
  init_fn = jax.jit(lambda key: model.lazy_init(key, jax.ShapeDtypeStruct((2, *image_shape), jnp.float32), train=False))
  return model, init_fn(jax.random.key(0, impl="unsafe_rbg"))


def init(name, image_shape=MNIST, num_classes=10, **options):
  """(model, variables) on small images; cached, since several tests share GoogLeNet's."""
  return _init(name, image_shape, num_classes, tuple(sorted(options.items())))


def test_every_model_of_the_zoo_is_registered():
  assert set(models.names()) == EXPECTED_NAMES


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_parameter_count_matches_the_published_figure_exactly(name):
  expected, image_shape, num_classes = PARAM_COUNTS[name]
  params = shapes(name, image_shape, num_classes)["params"]
  assert count({k: v for k, v in params.items() if "aux" not in k}) == expected


@pytest.mark.slow
def test_resnet1202_has_19_4_million_parameters():
  assert count(shapes("resnet1202", CIFAR, 10)["params"]) == 19_421_274  # Table 6: 19.4M


def test_googlenet_aux_heads_are_parameters_named_aux():
  params = shapes("googlenet", IMAGENET, 1000)["params"]
  assert {"aux1", "aux2"} <= set(params)
  # Section 5: avg-pool 5x5/3 on 14x14x512 -> 4x4x128 after the 1x1 conv -> FC 1024.
  assert params["aux1"]["fc1"]["kernel"].shape == (4 * 4 * 128, 1024)
  assert params["aux2"]["conv"]["conv"]["kernel"].shape == (1, 1, 528, 128)


def outputs(name, image_shape, num_classes=1000, **options) -> dict:
  rows, _ = summary.layers(models.create(name, num_classes=num_classes, **options), image_shape)
  return {"/".join(row.path): row.output_shape[1:] for row in rows}


def test_alexnet_layer_outputs_follow_the_paper():
  out = outputs("alexnet_grouped", IMAGENET_227)
  assert [out[f"conv{i}"] for i in range(1, 6)] == [
    (55, 55, 96),
    (27, 27, 256),
    (13, 13, 384),
    (13, 13, 384),
    (13, 13, 256),
  ]
  assert [out[f"fc{i}"] for i in (6, 7, 8)] == [(4096,), (4096,), (1000,)]
  params = shapes("alexnet_grouped", IMAGENET_227, 1000)["params"]
  # Section 3.5: conv2 reads 5x5x48 (its own tower), conv3 3x3x256 (both towers), conv4/5 3x3x192;
  # fc6 reads the 6x6x256 map after the third pool.
  kernels = [params[f"conv{i}"]["kernel"].shape for i in range(1, 6)]
  assert kernels == [(11, 11, 3, 96), (5, 5, 48, 256), (3, 3, 256, 384), (3, 3, 192, 384), (3, 3, 192, 256)]
  assert params["fc6"]["kernel"].shape == (6 * 6 * 256, 4096)
  # The paper's stated 224 input is padded to the 227 its arithmetic needs.
  assert outputs("alexnet", IMAGENET)["conv1"] == (55, 55, 96)


def test_vgg16_layer_outputs_follow_table_1_column_d():
  out = outputs("vgg16", IMAGENET)
  expected = [(224, 64)] * 2 + [(112, 128)] * 2 + [(56, 256)] * 3 + [(28, 512)] * 3 + [(14, 512)] * 3
  assert [out[f"conv{i}"] for i in range(1, 14)] == [(s, s, c) for s, c in expected]
  assert [out["fc6"], out["fc7"], out["fc8"]] == [(1, 1, 4096), (1, 1, 4096), (1, 1, 1000)]


def test_vgg_dense_evaluation_averages_the_score_map_of_larger_images():
  model, variables = init("vgg11", (32, 32, 1), 10, small_input=True)  # 1x1 final map: fc6 is 1x1
  big = jnp.asarray(np.random.default_rng(0).normal(size=(1, 96, 96, 1)), jnp.float32)
  rows, _ = summary.layers(model, (96, 96, 1))
  assert {"/".join(r.path): r.output_shape for r in rows}["fc8"] == (1, 3, 3, 10)  # a 3x3 class-score map
  assert model.apply(variables, big).shape == (1, 10)


def test_vgg_stretches_a_final_map_smaller_than_fc6s_window_as_torchvisions_adaptive_pooling():
  """Below 224 pixels the final map is shorter than fc6's 7x7 window: it is stretched to 7 pixels a side, so
  a 64-pixel image gets a 1x1 score map, not an empty one (whose mean was NaN). The stretch is PyTorch's
  adaptive average pooling, which torchvision's VGG applies before its classifier."""
  rows, _ = summary.layers(models.create("vgg11", num_classes=10), (64, 96, 3))  # a 2x3 final map
  assert {"/".join(r.path): r.output_shape for r in rows}["fc8"] == (1, 1, 1, 10)
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(0).normal(size=(2, 10, 10, 5)).astype(np.float32)
  for height, width in ((1, 1), (2, 3), (5, 7), (6, 6), (10, 9)):  # (10, 9): it averages larger maps down
    ours = layers.adaptive_avg_pool(jnp.asarray(x[:, :height, :width]), (7, 7))
    theirs = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x[:, :height, :width]).permute(0, 3, 1, 2), 7)
    np.testing.assert_allclose(ours, theirs.permute(0, 2, 3, 1).numpy(), rtol=1e-6, atol=1e-6)


def test_googlenet_layer_outputs_follow_table_1():
  out = outputs("googlenet", IMAGENET)
  assert out["conv1/conv"] == (112, 112, 64) and out["conv2/conv"] == (56, 56, 192)
  table = {
    "3a": (28, 256),
    "3b": (28, 480),
    "4a": (14, 512),
    "4b": (14, 512),
    "4c": (14, 512),
    "4d": (14, 528),
    "4e": (14, 832),
    "5a": (7, 832),
    "5b": (7, 1024),
  }
  assert {k: out[f"inception{k}"] for k in table} == {k: (s, s, c) for k, (s, c) in table.items()}
  assert out["fc"] == (1000,)
  # torchvision's variant keeps the shapes; its "5x5" branch is 3x3.
  assert outputs("googlenet_bn", IMAGENET)["inception5b/b5x5/conv"] == (7, 7, 128)
  assert shapes("googlenet_bn", IMAGENET, 1000)["params"]["inception3a"]["b5x5"]["conv"]["kernel"].shape == (
    3,
    3,
    16,
    32,
  )


def lrn_by_the_formula(a, k=2.0, n=5, alpha=1e-4, beta=0.75):
  """AlexNet Section 3.3, written out channel by channel."""
  b = np.empty_like(a)
  channels = a.shape[-1]
  for i in range(channels):
    lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
    b[..., i] = a[..., i] / (k + alpha * np.sum(a[..., lo : hi + 1] ** 2, axis=-1)) ** beta
  return b


def test_lrn_matches_the_papers_formula():
  # Large activations, so that alpha * sum is comparable with k and an error in n, alpha or the window shows.
  a = np.random.default_rng(0).normal(scale=60.0, size=(2, 3, 3, 12)).astype(np.float32)
  np.testing.assert_allclose(
    np.asarray(layers.LocalResponseNorm()(jnp.asarray(a))), lrn_by_the_formula(a), rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(
    np.asarray(layers.LocalResponseNorm(k=1.0, alpha=2e-5)(jnp.asarray(a))),
    lrn_by_the_formula(a, k=1.0, alpha=2e-5),
    rtol=1e-5,
    atol=1e-6,
  )
  assert not np.allclose(lrn_by_the_formula(a), lrn_by_the_formula(a, alpha=1e-4 / 5), rtol=1e-3)  # /n matters


@pytest.mark.parametrize("name", ["googlenet", "googlenet_bn"])
def test_aux_classifiers_run_only_in_training(name):
  model, variables = init(name)
  assert {"aux1", "aux2"} <= set(variables["params"])
  images = jnp.asarray(np.random.default_rng(0).normal(size=(2, *MNIST)), jnp.float32)
  _, state = model.apply(variables, images, train=False, mutable=["aux_logits", "batch_stats"])
  assert "aux_logits" not in state
  logits, state = model.apply(
    variables, images, train=True, rngs={"dropout": jax.random.PRNGKey(1)}, mutable=["aux_logits", "batch_stats"]
  )
  assert sorted(state["aux_logits"]) == ["aux1_logits", "aux2_logits"]
  assert all(x[0].shape == logits.shape == (2, 10) for x in state["aux_logits"].values())


@pytest.mark.parametrize("name", ["alexnet", "googlenet"])
def test_dropout_is_off_in_evaluation_and_on_in_training(name):
  model, variables = init(name)
  images = jnp.asarray(np.random.default_rng(0).normal(size=(2, *MNIST)), jnp.float32)
  np.testing.assert_array_equal(model.apply(variables, images), model.apply(variables, images))

  def train_logits(seed):
    return model.apply(
      variables, images, train=True, rngs={"dropout": jax.random.PRNGKey(seed)}, mutable=["aux_logits", "batch_stats"]
    )[0]

  assert not np.allclose(train_logits(1), train_logits(2))


def std_close(x, expected, rel=0.05):
  return abs(float(np.std(x)) - expected) <= rel * expected and abs(float(np.mean(x))) < 0.1 * expected


def test_alexnet_initialisation_follows_section_5():
  _, variables = init("alexnet")
  p = variables["params"]
  for layer in ("conv2", "conv3", "conv4", "fc6", "fc7"):
    assert std_close(p[layer]["kernel"], 0.01), layer
  for layer in ("conv2", "conv4", "conv5", "fc6", "fc7"):
    assert np.all(p[layer]["bias"] == 1.0), layer
  for layer in ("conv1", "conv3", "fc8"):
    assert np.all(p[layer]["bias"] == 0.0), layer


def test_vgg_initialisation_follows_section_3_1():
  _, normal = init("vgg11")
  assert std_close(normal["params"]["conv8"]["kernel"], 0.01)
  assert std_close(normal["params"]["fc7"]["kernel"], 0.01)
  assert all(np.all(normal["params"][f"conv{i}"]["bias"] == 0) for i in range(1, 9))
  _, glorot = init("vgg11", initializer="glorot")
  kernel = glorot["params"]["conv8"]["kernel"]  # 3x3x512 -> 512: variance 2 / (fan_in + fan_out)
  assert std_close(kernel, math.sqrt(2.0 / (2 * 9 * 512)))


def test_resnet_initialisation_is_he_normal_with_unit_batchnorm():
  _, variables = init("resnet18")
  block = variables["params"]["conv5_2"]
  assert std_close(block["conv1"]["kernel"], math.sqrt(2.0 / (3 * 3 * 512)))  # fan-out: k*k*out channels
  assert np.all(block["bn1"]["scale"] == 1.0) and np.all(block["bn1"]["bias"] == 0.0)
  assert set(variables["batch_stats"]["conv5_2"]["bn1"]) == {"mean", "var"}


def test_lenet5_1998_initialisation_is_uniform_2_4_over_fan_in():
  _, variables = init("lenet5_1998")
  p = variables["params"]
  c5 = np.asarray(p["c5"]["kernel"])  # fan-in 5*5*16
  limit = 2.4 / 400
  assert np.abs(c5).max() <= limit and std_close(c5, limit / math.sqrt(3))
  # C3: each connection's limit follows its output map's fan-in (3, 4 or 6 input maps of 5x5).
  c3 = np.asarray(p["c3"]["kernel"])
  assert c3.shape == (5, 5, 60) and np.abs(c3[..., :18]).max() <= 2.4 / 75 and np.abs(c3[..., -6:]).max() <= 2.4 / 150


def test_googlenet_initialisations():
  _, paper = init("googlenet")
  assert np.all(paper["params"]["inception4a"]["b1x1"]["conv"]["bias"] == 0.2)
  _, bn = init("googlenet_bn")
  kernel = np.asarray(bn["params"]["inception4a"]["b3x3"]["conv"]["kernel"])
  assert std_close(kernel, 0.01)


# Published multiply-adds at 224x224, 1000 classes: torchvision's model metadata and the ResNet paper.
PUBLISHED_MACS = [
  ("resnet50", {"stride_in_3x3": True}, 4.089e9),
  ("vgg16", {}, 15.47e9),
  ("alexnet_owt", {}, 0.714e9),
  ("googlenet_bn", {}, 1.498e9),
  ("resnet50", {}, 3.8e9),
  ("resnet18", {}, 1.8e9),
  ("resnet152", {}, 11.3e9),
]


@pytest.mark.parametrize("name,options,published", PUBLISHED_MACS)
def test_multiply_adds_agree_with_published_totals(name, options, published):
  macs = summary.totals(models.create(name, num_classes=1000, **options), IMAGENET)["macs"]
  assert abs(macs - published) <= 0.02 * published, f"{name} {options}: {macs / 1e9:.3f} G"


# Compiling a forward/backward pass takes 15-60 s per deep model on this 2-core CPU. One model of each
# builder and block type runs compiled (the small ones in the fast tier); the other depths of the same
# builders (VGG A/B/D/E, ResNet-34/101/152, the CIFAR depths) are traced, forward and backward on the 8
# devices, with jax.eval_shape: they build and differentiate and every gradient has its parameter's shape,
# and the ~7 minutes their compilation took stay out of CI. resnet1202's 1,202 unrolled layers took over
# 10 minutes and 15 GB to compile on CPU before being stopped, so it is traced too.
FAST = {"lenet5", "lenet5_1998", "mlp", "simple_cnn", "resnet20"}
COMPILED = FAST | {
  "alexnet",
  "alexnet_grouped",
  "alexnet_owt",
  "vgg11_lrn",
  "vgg16_c",
  "vgg19_bn",
  "googlenet",
  "googlenet_bn",
  "resnet18",
  "resnet50",
}


def forward_backward_param(name):
  if name in FAST or name not in COMPILED:
    return name
  return pytest.param(name, marks=pytest.mark.slow)


@pytest.fixture
def release_compiled():
  """Drops compiled executables after each big model: ~30 of them held at once took >10 GB in one worker."""
  yield
  jax.clear_caches()


@pytest.mark.parametrize("name", [forward_backward_param(n) for n in sorted(EXPECTED_NAMES)])
def test_forward_and_backward_on_8_devices(name, release_compiled):
  """The project's train step over the 8 devices: a finite loss, and a finite gradient for nearly every
  parameter, averaged over the devices; the models that are not compiled are traced to their shapes."""
  devices = jax.device_count()
  assert devices == 8
  rng = np.random.default_rng(0)
  batch = {
    "image": rng.normal(size=(2 * devices, *MNIST)).astype(np.float32),
    "label": np.arange(2 * devices, dtype=np.int32) % 10,
  }
  config = default.get_config()
  # Momentum 0: the optimizer's trace is then the step's gradient, which the test reads.
  tx = optax.sgd(0.01, momentum=0.0)
  strategy = parallel.ShardMap()
  step = strategy.compile(
    functools.partial(train.train_step, options=train.StepOptions.from_config(config)), donate_state=False
  )
  if name not in COMPILED:
    model = models.create(name, num_classes=10)
    state = jax.eval_shape(lambda: train.fresh_state(config, model, MNIST, tx))
    new_state, sums = jax.eval_shape(step, state, batch)
    assert sums["loss"].shape == ()
    grads = new_state.opt_state[0].trace
    assert jax.tree.map(lambda g: g.shape, grads) == jax.tree.map(lambda p: p.shape, state.params)
    return
  model, variables = init(name)
  state = train.create_train_state(config, model, MNIST, tx, variables=variables)
  new_state, sums = strategy.to_host(step(strategy.put_state(state), strategy.put_batch(batch)))
  assert np.isfinite(sums["loss"] / sums["count"])
  norms = [float(np.linalg.norm(g)) for g in jax.tree.leaves(new_state.opt_state[0].trace)]
  assert all(np.isfinite(norms)) and sum(n > 0 for n in norms) >= 0.9 * len(norms)
  if "batch_stats" in variables:  # BatchNorm statistics move in training
    assert not np.allclose(jax.tree.leaves(new_state.batch_stats)[0], jax.tree.leaves(variables["batch_stats"])[0])
