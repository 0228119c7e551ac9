"""Every registered model at every input size a user may give, from its smallest input (`smallest_input()`,
stated in the model's code from the layers that shrink the map) to 512 pixels, square or not: logits of shape
(batch, classes), finite in evaluation and in training (dropout and BatchNorm on, auxiliary heads too), as
are the softmax cross-entropy and its gradients, and no layer's output is empty. Below the smallest input,
initialising or applying a model fails with a one-line ValueError naming it and its smallest input.

What runs where. Real computation costs a compilation per model and size: 1-10 s on the 2-core CPU, 5-30 s
for the models of more than 30 weight layers (DEEP). Each (model, size) is checked at one of three levels
(the test id names it):
  shapes    jax.eval_shape of `init_with_output`: the logits' and auxiliary logits' shapes, and every layer's
            output non-empty (an empty map is what made VGG's mean NaN: fc6's 7x7 window on the 2-6 pixel
            maps of 64-192 pixel inputs). Every model at every size, except those computed.
  forward   real evaluation and training passes: finite logits, auxiliary logits and BatchNorm statistics.
  backward  forward, and the cross-entropy and its gradients finite.
Every model computes at its smallest size, where its maps are tightest: backward for the models of BACKWARD,
forward for the others (a family member in BACKWARD computes backward on the same maps), in the slow tier
for DEEP. BACKWARD adds the sizes where a family's path changes; VGG-11 stands for the VGGs, which share
their pools and head. Models of more than 100 weight layers are traced only (TRACED_ONLY): their blocks are
resnet50's and resnet20's repeated on the same maps, their forward passes took 13-21 s to compile,
resnet1202's forward and backward over 10 minutes and 15 GB (tests/test_models.py), and its trace alone
takes 5 s a size. The fast forms (jaxcnn.fast_forms), which the entry points install, compute backward at
three tight sizes.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn import fast_forms, models
from jaxcnn.models import googlenet, layers

BATCH, CLASSES = 2, 3
# "smallest" is each model's own; 64-160 leave final maps of 2-5 pixels on 32-fold stems, 224 the papers'
# 7; (224, 320) is non-square, and (48, 160) takes the small-input stem by its short side.
SIZES = ("smallest", 64, 96, 128, 160, 224, (224, 320), (48, 160), 512)
# More than 30 weight layers: 5-30 s to compile; their computed checks are in the slow tier.
DEEP = {"googlenet", "googlenet_bn", "resnet32", "resnet34", "resnet44", "resnet50", "resnet56"}
# More than 100 weight layers: {model: (sizes traced, slow)}.
TRACED_ONLY = {
  "resnet101": (SIZES, False),
  "resnet110": (SIZES, False),
  "resnet152": (SIZES, False),
  "resnet1202": (("smallest", 512), True),
}
# Backward passes: {model: (sizes in the fast tier, sizes in the slow tier)}.
BACKWARD = {
  "mlp": (("smallest", (224, 320), 512), ()),
  "lenet5": (("smallest", (224, 320)), ()),
  "lenet5_1998": (("smallest", (224, 320), 512), ()),  # 512 pixels: C5's 121x121 map flattened into F6
  "simple_cnn": (("smallest", (48, 160)), ()),
  "alexnet_owt": (("smallest", 64), ()),  # torchvision's conv1 padding: 64 pixels leave 1x1 after the last pool
  # fc6 on a final map stretched from 2 pixels to 7, the dense evaluation of a non-square map, the small path's
  # 1x1 fc6 on a non-square map, and 512 pixels.
  "vgg11": (("smallest", 64, (224, 320), (48, 160)), (512,)),
  "resnet20": (("smallest", (224, 320)), ()),
  "resnet18": (("smallest",), ()),
  "googlenet_bn": ((), ("smallest",)),  # the auxiliary heads on 2x2 maps
}


def sides(model: nn.Module, size) -> tuple[int, int]:
  if size == "smallest":
    size = model.smallest_input()
  return (size, size) if isinstance(size, int) else size


def level(name: str, size) -> tuple[str, bool] | None:
  """(level, slow) of `name` at `size`; None: not checked."""
  if name in TRACED_ONLY:
    sizes, slow = TRACED_ONLY[name]
    return ("shapes", slow) if size in sizes else None
  fast, slow = BACKWARD.get(name, ((), ()))
  if size in fast or size in slow:
    return "backward", size in slow or name in DEEP
  if size == "smallest":
    return "forward", name in DEEP
  return "shapes", False


def cases():
  for name in models.names():
    model, seen = models.create(name, num_classes=CLASSES), set()
    for size in SIZES:
      height, width = sides(model, size)
      checked = level(name, size)
      if (height, width) in seen or checked is None:  # seen: e.g. a smallest input of 64 pixels
        continue
      seen.add((height, width))
      check, slow = checked
      marks = [pytest.mark.slow] if slow else []
      yield pytest.param(name, height, width, check, id=f"{name}-{height}x{width}-{check}", marks=marks)


def passes(model: nn.Module, images: jnp.ndarray, labels: jnp.ndarray, backward: bool) -> dict:
  """Initialises `model`; its evaluation logits, and in training its logits, auxiliary logits (GoogLeNet's),
  updated BatchNorm statistics and (with `backward`) cross-entropy summed over the heads and its gradients."""
  init_key, dropout_key = jax.random.split(jax.random.key(0, impl="unsafe_rbg"))
  variables = model.lazy_init(init_key, images, train=False)

  def loss_fn(params):
    logits, state = model.apply(
      {**variables, "params": params},
      images,
      train=True,
      rngs={"dropout": dropout_key},
      mutable=["batch_stats", "aux_logits"],
    )
    aux = jax.tree.leaves(state.get("aux_logits", {}))
    loss = sum(optax.softmax_cross_entropy_with_integer_labels(x, labels).mean() for x in [logits, *aux])
    return loss, {"train_logits": logits, "aux_logits": aux, "batch_stats": state.get("batch_stats", {})}

  results = {"eval_logits": model.apply(variables, images, train=False)}
  if backward:
    (results["loss"], outputs), results["grads"] = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
  else:
    _, outputs = loss_fn(variables["params"])
  return results | outputs


@pytest.mark.parametrize("name,height,width,check", list(cases()))
def test_every_model_at_every_size(name, height, width, check):
  check_model(name, height, width, check)


@pytest.fixture
def fast_forms_on():
  fast_forms.enable(add_xla_flags=False)  # XLA's flags are read when its backend starts: not here
  yield
  fast_forms.disable()


# The fast forms' own paths at tight sizes: max-pools over odd maps, with and without padding (strided slices),
# average pools over odd maps, fc6 as a matrix product on the stretched 7x7 map.
@pytest.mark.parametrize("name,height,width", [("vgg11", 64, 64), ("alexnet", 15, 15), ("simple_cnn", 5, 7)])
def test_the_fast_forms_at_tight_sizes(name, height, width, fast_forms_on):
  check_model(name, height, width, "backward")


def check_model(name: str, height: int, width: int, check: str) -> None:
  """Checks `name` at `height` x `width` at the level `check` (the module docstring's)."""
  model = models.create(name, num_classes=CLASSES)
  images = jnp.asarray(np.random.default_rng(0).normal(size=(BATCH, height, width, 3)), jnp.float32)
  labels = jnp.arange(BATCH) % CLASSES
  outputs = []  # (module path, output shape) of every layer, recorded while tracing

  def record(next_fun, args, kwargs, context):
    output = next_fun(*args, **kwargs)
    if context.method_name == "__call__":
      outputs.extend(("/".join(context.module.scope.path), leaf.shape) for leaf in jax.tree.leaves(output))
    return output

  with nn.intercept_methods(record):
    if check == "shapes":
      init = lambda images: model.init_with_output(jax.random.key(0), images, train=False)
      logits, _ = jax.eval_shape(init, images)  # initialisation runs the auxiliary heads too
    else:
      function = lambda images, labels: passes(model, images, labels, backward=check == "backward")
      compiled = jax.jit(function).lower(images, labels).compile()
  empty = list(dict.fromkeys(f"{path} {shape}" for path, shape in outputs if 0 in shape))
  assert not empty, f"{name} at {height}x{width}: empty layer outputs: {', '.join(empty)}"
  if check == "shapes":
    aux = [shape for path, shape in outputs if path in googlenet.AUX_AFTER.values()]
    assert [logits.shape, *aux] == [(BATCH, CLASSES)] * (1 + len(aux))
    return
  results = compiled(images, labels)
  assert all(x.shape == (BATCH, CLASSES) for x in [results["eval_logits"], results["train_logits"]])
  assert all(x.shape == (BATCH, CLASSES) for x in results["aux_logits"])
  leaves = jax.tree_util.tree_flatten_with_path(results)[0]
  nonfinite = [jax.tree_util.keystr(path) for path, leaf in leaves if not np.all(np.isfinite(leaf))]
  assert not nonfinite, f"{name} at {height}x{width}: not finite: {', '.join(nonfinite[:8])}"


@pytest.mark.parametrize("name", models.names())
def test_below_the_smallest_input_is_a_one_line_error_naming_the_model(name):
  model = models.create(name, num_classes=CLASSES)
  smallest = model.smallest_input()
  init = lambda images: model.init(jax.random.key(0), images, train=False)
  for height, width in ((smallest - 1, smallest - 1), (smallest, smallest - 1), (smallest - 1, 512)):
    with pytest.raises(ValueError) as error:
      jax.eval_shape(init, jax.ShapeDtypeStruct((1, height, width, 3), jnp.float32))
    assert str(error.value) == f"{name} needs inputs of at least {smallest}x{smallest} px; got {height}x{width}"
  # apply checks before it reads a variable
  with pytest.raises(ValueError, match=f"^{name} needs inputs of at least {smallest}x{smallest} px; got "):
    jax.eval_shape(lambda: model.apply({"params": {}}, jnp.zeros((1, smallest - 1, smallest, 3))))


def test_the_imagenet_stems_take_the_sizes_where_the_automatic_choice_picks_them():
  """`small_input=None` switches to the ImageNet stem at SMALL_INPUT_BELOW pixels: every such stem takes them,
  so a model's smallest input is its small stem's."""
  stems = 0
  for name in models.names():
    try:
      imagenet = models.create(name, num_classes=CLASSES, small_input=False)
    except ValueError:  # no small_input option: one stem
      continue
    stems += 1
    assert imagenet.smallest_input() <= layers.SMALL_INPUT_BELOW, name
  assert stems >= 4  # AlexNet, VGG, GoogLeNet and ResNet families
