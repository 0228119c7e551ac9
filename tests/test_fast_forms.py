"""jaxcnn.fast_forms against the plain layers: each fast form's values and gradients (float32 and bfloat16), the
models built with the switch on against the same models with it off, the forms actually in the traced
train steps, and the per-jaxlib XLA flag table.

Tolerances hold on any CPU: the forms add the same terms in another order, and the order also changes with
the CPU's vector width, so results differ by a few ulps of the largest terms summed. The absolute tolerance
is therefore relative to each array's largest magnitude: a convolution's weight gradient sums hundreds of
products, and an element near zero keeps the rounding error of those terms (float32: rtol 1e-5 and atol 1e-5
of the largest element; bfloat16, 8 mantissa bits: 2e-2).
"""

import functools
import os
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
import optax
import pytest
from conftest import run_jaxcnn

from jaxcnn import fast_forms, models, xla_flags
from jaxcnn.fast_forms import conv, lrn, pool
from jaxcnn.models import layers

REPO = pathlib.Path(__file__).resolve().parents[1]
TOLERANCE = {jnp.float32: 1e-5, jnp.bfloat16: 2e-2}
NHWC = ("NHWC", "HWIO", "NHWC")


def assert_close(ours, plain, dtype=jnp.float32):
  ours, plain = np.float32(ours), np.float32(plain)
  scale = max(1.0, float(np.max(np.abs(plain))))
  np.testing.assert_allclose(ours, plain, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * scale)


def values_and_gradients(f, *args):
  """f(*args) and the gradients of a nonlinear loss of it for every argument, compiled as one function."""
  loss = lambda *args: jnp.sum(jnp.sin(f(*args).astype(jnp.float32)))
  return jax.jit(lambda *args: (f(*args), jax.grad(loss, tuple(range(len(args))))(*args)))(*args)


def assert_same_values_and_gradients(ours, plain, *args, dtype=jnp.float32):
  (ours_value, ours_grads), (plain_value, plain_grads) = (values_and_gradients(f, *args) for f in (ours, plain))
  for ours_array, plain_array in zip((ours_value, *ours_grads), (plain_value, *plain_grads)):
    assert ours_array.dtype == plain_array.dtype
    assert_close(ours_array, plain_array, dtype)


def convolutions(x, w, padding, strides=(1, 1)):
  """(the fast form's convolution, XLA's), both taking (x, w)."""
  numbers = jax.lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
  options = {"window_strides": strides, "padding": padding, "dimension_numbers": numbers}
  return functools.partial(conv.conv_general_dilated, **options), functools.partial(
    jax.lax.conv_general_dilated, **options
  )


def images_and_kernel(image_shape, kernel, features, dtype, scale):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=image_shape), dtype)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, image_shape[-1], features)) * scale, dtype)
  return x, w


@pytest.mark.parametrize(
  "image_shape, kernel, features, padding, dtype",
  [
    ((3, 12, 12, 1), 3, 32, "SAME", jnp.float32),  # the small CNN's first conv (patches weight gradient)
    ((3, 12, 12, 3), 3, 16, ((1, 1), (1, 1)), jnp.float32),  # ResNet-20's stem
    ((3, 12, 12, 1), 5, 6, "VALID", jnp.float32),  # LeNet-5's C1 (XLA's weight gradient)
    ((3, 12, 12, 1), 5, 6, "VALID", jnp.bfloat16),
    ((3, 10, 10, 2), 3, 16, ((2, 0), (1, 2)), jnp.bfloat16),  # uneven padding, patches weight gradient
  ],
)
def test_shifted_convolution_equals_xla_values_and_gradients(image_shape, kernel, features, padding, dtype):
  x, w = images_and_kernel(image_shape, kernel, features, dtype, scale=0.3)
  ours, xla = convolutions(x, w, padding)
  jaxpr = str(jax.make_jaxpr(ours)(x, w))
  assert "conv_general_dilated" not in jaxpr and "custom_vjp_call" in jaxpr  # the shifted form ran
  assert_same_values_and_gradients(ours, xla, x, w, dtype=dtype)


@pytest.mark.parametrize(
  "image_shape, kernel, features, padding, dtype",
  [
    ((3, 14, 14, 6), 5, 16, "VALID", jnp.float32),  # LeNet-5's C3
    ((3, 9, 9, 5), 3, 7, ((2, 1), (0, 2)), jnp.float32),  # uneven padding
    ((3, 9, 9, 4), 3, 8, "SAME", jnp.bfloat16),
    ((3, 9, 9, 1), 5, 64, "SAME", jnp.float32),  # one channel, too many terms for the shifted form
  ],
)
def test_narrow_input_convolution_equals_xla_values_and_gradients(image_shape, kernel, features, padding, dtype):
  """Stride-1 convolutions of inputs with at most 8 channels (not shifted) keep XLA's forward; their
  written-out input gradient (one product with the kernel, shifted into place) equals XLA's."""
  x, w = images_and_kernel(image_shape, kernel, features, dtype, scale=0.2)
  ours, xla = convolutions(x, w, padding)
  jaxpr = str(jax.make_jaxpr(ours)(x, w))
  assert "custom_vjp_call" in jaxpr and "conv_general_dilated" in jaxpr  # XLA's forward inside the custom VJP
  assert_same_values_and_gradients(ours, xla, x, w, dtype=dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_whole_input_kernel_is_a_matrix_product_with_the_convolutions_values_and_gradients(dtype):
  """LeNet-5's C5 (and VGG's fc6 on 7x7 maps): a kernel as large as its unpadded input runs as a dot."""
  x, w = images_and_kernel((3, 5, 5, 16), 5, 12, dtype, scale=0.1)
  ours, xla = convolutions(x, w, "VALID")
  jaxpr = str(jax.make_jaxpr(ours)(x, w))
  assert "dot_general" in jaxpr and "conv_general_dilated" not in jaxpr
  assert_same_values_and_gradients(ours, xla, x, w, dtype=dtype)
  padded, _ = convolutions(x, w, "SAME")
  assert "conv_general_dilated" in str(jax.make_jaxpr(padded)(x, w))  # padded: not one output pixel


def test_strided_wide_grouped_and_1d_convolutions_stay_xlas_behind_the_barrier():
  x, w = images_and_kernel((2, 16, 16, 16), 3, 32, jnp.float32, scale=0.1)
  for strides, padding in (((2, 2), "SAME"), ((1, 1), ((1, 1), (1, 1)))):  # strided; 16 input channels
    ours, xla = convolutions(x, w, padding, strides)
    jaxpr = str(jax.make_jaxpr(ours)(x, w))
    assert "optimization_barrier" in jaxpr and "conv_general_dilated" in jaxpr and "custom_vjp" not in jaxpr
    assert_same_values_and_gradients(ours, xla, x, w)
  numbers = jax.lax.conv_dimension_numbers(x.shape, w[:, :, :8].shape, NHWC)  # two groups of 8 channels
  grouped = conv.conv_general_dilated(x, w[:, :, :8], (1, 1), "SAME", dimension_numbers=numbers, feature_group_count=2)
  np.testing.assert_array_equal(
    grouped,
    jax.lax.conv_general_dilated(x, w[:, :, :8], (1, 1), "SAME", dimension_numbers=numbers, feature_group_count=2),
  )
  signal, taps = jnp.ones((2, 16, 1)), jnp.ones((3, 1, 4))  # a 1-D convolution (NWC): XLA's
  numbers = jax.lax.conv_dimension_numbers(signal.shape, taps.shape, ("NWC", "WIO", "NWC"))
  ours = lambda signal, taps: conv.conv_general_dilated(signal, taps, (1,), "SAME", dimension_numbers=numbers)
  assert "optimization_barrier" not in str(jax.make_jaxpr(ours)(signal, taps))
  np.testing.assert_array_equal(
    ours(signal, taps), jax.lax.conv_general_dilated(signal, taps, (1,), "SAME", dimension_numbers=numbers)
  )


@pytest.mark.parametrize(
  "shape, window, stride, padding",
  [
    ((2, 8, 8, 3), 2, 2, "VALID"),
    ((2, 8, 8, 3), 2, 2, "SAME"),
    ((2, 7, 7, 3), 2, 2, "SAME"),
    ((2, 9, 9, 3), 3, 2, "VALID"),  # AlexNet's overlapping pool
    ((1, 10, 10, 3), 3, 2, "SAME"),
    ((2, 9, 9, 3), 3, 2, ((1, 1), (1, 1))),  # GoogLeNet's, ResNet's stem
    ((2, 9, 9, 3), 3, 1, "SAME"),
    ((1, 13, 13, 2), 5, 2, "VALID"),
    ((2, 11, 11, 2), 2, 3, "VALID"),
  ],
)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_max_pool_matches_flax_values_and_gradients(shape, window, stride, padding, dtype):
  """The reshape and strided-slice forms give nn.max_pool's values and gradients. The inputs are distinct
  multiples of 1/64 up to 4 in magnitude, exact in bfloat16 too: no ties (see the next test)."""
  distinct = jax.random.permutation(jax.random.PRNGKey(0), jnp.arange(-256, 256))[: np.prod(shape)]
  x = (distinct.reshape(shape) / 64).astype(dtype)
  ours = lambda x: pool.max_pool(x, window, stride, padding)
  plain = lambda x: nn.max_pool(x, (window, window), strides=(stride, stride), padding=padding)
  np.testing.assert_array_equal(np.float32(ours(x)), np.float32(plain(x)))
  assert_same_values_and_gradients(ours, plain, x, dtype=dtype)


@pytest.mark.parametrize(
  "window, stride, padding", [(2, 2, "VALID"), (3, 2, "VALID"), (3, 2, ((1, 1), (1, 1))), (5, 2, "VALID")]
)
def test_max_pool_gradient_shares_ties(window, stride, padding):
  """With ties (integer images), each window's gradient is shared among its maxima, as jnp.max's is."""
  x = jnp.asarray(np.random.default_rng(0).integers(0, 3, (2, 11, 11, 3)), jnp.float32)
  pads = (
    jax.lax.padtype_to_pads(x.shape[1:3], (window,) * 2, (stride,) * 2, padding)
    if isinstance(padding, str)
    else padding
  )

  def stacked_max(x):
    padded = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
    rows, cols = (padded.shape[1] - window) // stride + 1, (padded.shape[2] - window) // stride + 1
    return jnp.max(
      jnp.stack(
        [
          padded[:, i : i + stride * (rows - 1) + 1 : stride, j : j + stride * (cols - 1) + 1 : stride]
          for i in range(window)
          for j in range(window)
        ]
      ),
      axis=0,
    )

  ours = lambda x: pool.max_pool(x, window, stride, padding)
  np.testing.assert_array_equal(ours(x), stacked_max(x))
  assert_same_values_and_gradients(ours, stacked_max, x)


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 7, 3)])  # exact tiles, and a remainder (nn.avg_pool)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_avg_pool_matches_flax_values_and_gradients(shape, dtype):
  x = jax.random.normal(jax.random.PRNGKey(0), shape).astype(dtype)
  ours = lambda x: pool.avg_pool(x, 2)
  assert ("reduce_window_sum" in str(jax.make_jaxpr(ours)(x))) == bool(shape[1] % 2)  # the sum of tiles if exact
  assert_same_values_and_gradients(ours, lambda x: nn.avg_pool(x, (2, 2), strides=(2, 2)), x, dtype=dtype)


@pytest.mark.parametrize("n", [5, 4, 1])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_lrn_written_out_gradient_equals_the_formulas_gradient(n, dtype):
  # Large activations, so that alpha * sum is comparable with k and an error in the window shows. In bfloat16
  # smaller ones: the gradient's two terms then cancel less, which bfloat16 resolves too coarsely to compare.
  scale = 30.0 if dtype == jnp.float32 else 5.0
  a = jnp.asarray(np.random.default_rng(0).normal(scale=scale, size=(2, 3, 3, 12)), dtype)
  ours = lambda a: lrn.local_response_norm(a, 2.0, n, 1e-3, 0.75)
  assert "custom_vjp_call" in str(jax.make_jaxpr(ours)(a))
  assert_same_values_and_gradients(ours, lambda a: layers.local_response_norm(a, 2.0, n, 1e-3, 0.75), a, dtype=dtype)


def test_forms_that_apply_on_the_cpu_only_are_the_plain_layers_elsewhere(monkeypatch):
  """On another backend the convolution is XLA's without a barrier and the overlapping max-pool Flax's;
  the exact-tile pools and the LRN's gradient stay."""
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  x, w = images_and_kernel((2, 9, 9, 1), 3, 8, jnp.float32, scale=0.3)
  ours, _ = convolutions(x, w, "SAME")
  assert "optimization_barrier" not in str(jax.make_jaxpr(ours)(x, w))
  assert "reduce_window_max" in str(jax.make_jaxpr(lambda x: pool.max_pool(x, 3, 2))(x))
  assert "reduce_window" not in str(jax.make_jaxpr(lambda x: pool.max_pool(x, 3, 3))(x))
  assert "custom_vjp_call" in str(jax.make_jaxpr(lambda x: lrn.local_response_norm(x, 2.0, 5, 1e-4, 0.75))(x))


@pytest.fixture
def switch(monkeypatch):
  """Sets the fast-forms switch (on: enable(), off: disable()); XLA_FLAGS and the plain layers come back after."""
  monkeypatch.setenv("XLA_FLAGS", os.environ.get("XLA_FLAGS", ""))
  yield lambda on: fast_forms.enable() if on else fast_forms.disable()
  fast_forms.disable()


def test_enable_installs_every_form_and_disable_restores_the_plain_layers(switch):
  assert switch(True).startswith("fast forms: on (XLA_FLAGS for jaxlib ")
  assert set(layers._FAST_FORMS) == set(layers.FAST_FORM_NAMES)
  assert switch(False) == "fast forms: off (plain layers, no XLA flags added)"
  assert not layers._FAST_FORMS
  with pytest.raises(ValueError, match="unknown layer form"):
    layers.use_fast_forms({"max_pool2d": pool.max_pool})


# Between them the models use every form: LeNet-5 the shifted C1, the narrow-input C3, the dot C5 and the
# exact-tile max-pool; the small CNN the shifted convolution's patches weight gradient and the tile average
# pool; AlexNet the LRN, the overlapping max-pool, the narrow-input conv2 and XLA's convolution behind the
# barrier. (ResNet-20 adds only BatchNorm and residual additions around the same forms, and took several
# times as long to compile.)
MODELS = {
  "lenet5": ({}, (28, 28, 1)),
  "simple_cnn": ({}, (28, 28, 1)),
  "alexnet": ({"widths": (8, 8, 16, 16, 16), "initializer": "he", "hidden_bias": 0.0}, (28, 28, 1)),
}


def train_step_outputs(name):
  """The model, and a function that returns a new jitted function of (variables, images) -> (logits, BatchNorm
  statistics, gradients) of a train step: a new Python function each time, so that it is traced afresh under
  the switch's state at that time (jax.jit of the same function would reuse the first trace)."""
  options, _ = MODELS[name]
  model = models.create(name, num_classes=10, **options)

  def outputs(variables, images):
    labels = jnp.arange(images.shape[0]) % 10

    def loss_fn(params):
      logits, state = model.apply(
        {**variables, "params": params},
        images,
        train=True,
        rngs={"dropout": jax.random.PRNGKey(1)},
        mutable=["batch_stats"],
      )
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), (logits, state)

    (_, (logits, state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    return logits, state, grads

  return model, lambda: jax.jit(lambda variables, images: outputs(variables, images))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_model_with_the_fast_forms_on_computes_what_it_computes_with_them_off(name, switch):
  model, step = train_step_outputs(name)
  _, image_shape = MODELS[name]
  images = jax.random.normal(jax.random.PRNGKey(0), (4, *image_shape))
  variables = jax.jit(model.init)(jax.random.key(2, impl="unsafe_rbg"), images)  # faster to compile than threefry
  switch(False)
  plain = step()(variables, images)
  switch(True)
  fast = step()(variables, images)
  assert jax.tree.structure(fast) == jax.tree.structure(plain)
  for (path, plain_leaf), fast_leaf in zip(jax.tree_util.tree_leaves_with_path(plain), jax.tree.leaves(fast)):
    # Gradients sum over the batch and the layers above: tolerance relative to each array's scale.
    scale = float(jnp.max(jnp.abs(plain_leaf)))
    np.testing.assert_allclose(fast_leaf, plain_leaf, rtol=1e-4, atol=1e-5 * scale, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize(
  "name, on, off",
  [
    # LeNet-5: the barriers, the custom VJPs of C1 and C3; without, XLA's windowed max and its scatter.
    ("lenet5", ("optimization_barrier", "custom_vjp_call"), ("select_and_scatter_add", "reduce_window_max")),
    # AlexNet: the overlapping max-pools as strided slices and LRN's custom VJP; without, XLA's pool.
    ("alexnet", ("optimization_barrier", "custom_vjp_call"), ("select_and_scatter_add", "reduce_window_max")),
  ],
)
def test_the_fast_forms_are_in_the_train_step_only_with_the_switch_on(name, on, off, switch):
  model, step = train_step_outputs(name)
  _, image_shape = MODELS[name]
  images = jax.ShapeDtypeStruct((4, *image_shape), jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), images)
  for enabled, present, absent in ((True, on, off), (False, off, on)):
    switch(enabled)
    jaxpr = str(jax.make_jaxpr(step())(variables, images))
    assert all(op in jaxpr for op in present) and not any(op in jaxpr for op in absent), (enabled, present, absent)


@pytest.mark.parametrize("version", ["0.10.2", "0.11.2", "0.12.0.1"])
def test_a_jaxlib_in_the_table_gets_its_flags(version):
  environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  applied = xla_flags.apply(version, environ)
  assert applied.added == xla_flags.FLAGS_BY_JAXLIB[xla_flags.minor_version(version)] and not applied.kept
  assert environ["XLA_FLAGS"] == " ".join(["--xla_force_host_platform_device_count=8", *applied.added])
  assert str(applied) == f"XLA_FLAGS for jaxlib {version}: added {' '.join(applied.added)}"
  assert xla_flags.apply(version, environ).added == ()  # a second call adds nothing twice


@pytest.mark.parametrize("users", ["--xla_cpu_experimental_ynn_fusion_type=", "-xla_cpu_experimental_ynn_fusion_type"])
def test_a_flag_the_user_set_is_never_overridden(users):
  environ = {"XLA_FLAGS": users}
  applied = xla_flags.apply("0.10.2", environ)
  assert applied.added == (xla_flags.KEEP_BARRIERS,) and applied.kept == (users,)
  assert environ["XLA_FLAGS"] == f"{users} {xla_flags.KEEP_BARRIERS}"
  assert str(applied).endswith(f"; kept yours: {users}")


@pytest.mark.parametrize("version", ["0.13.0", "0.9.1", "1.0.0"])
def test_a_jaxlib_not_in_the_table_gets_only_the_flags_every_version_accepts(version):
  environ = {}
  applied = xla_flags.apply(version, environ)
  assert applied.added == xla_flags.SAFE_FLAGS == (xla_flags.KEEP_BARRIERS,)
  assert environ["XLA_FLAGS"] == xla_flags.KEEP_BARRIERS
  assert "not in the flag table" in str(applied)


def test_the_table_covers_the_installed_jaxlib():
  """Every jaxlib in pyproject.toml's range has its entry, not the fallback."""
  assert xla_flags.minor_version(jaxlib.__version__) in xla_flags.FLAGS_BY_JAXLIB


def run_main(*args, xla_flags_env: str):
  result = run_jaxcnn("--mode=summary", "--config=lenet5", *args, extra_env={"XLA_FLAGS": xla_flags_env}, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout.splitlines()[0]


def test_the_command_line_switches_the_fast_forms_and_keeps_the_users_flags():
  assert run_main("--nofast_forms", xla_flags_env="") == "fast forms: off (plain layers, no XLA flags added)"
  line = run_main(xla_flags_env="--xla_cpu_experimental_ynn_fusion_type=")
  assert line.startswith("fast forms: on (XLA_FLAGS for jaxlib ") and "kept yours: --xla_cpu_experimental_ynn" in line
