"""LeNet-5: LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 1998, Section II.B and Fig. 2.

`lenet5_1998` is the network of the paper: C3's partial connection table (Table I), the scaled tanh 1.7159 tanh(2a/3)
(Appendix A), subsampling layers with a trainable coefficient and bias per map, and a Euclidean RBF output layer;
60,000 trainable parameters. `lenet5` is the modern variant the tutorials train: the paper's layer sizes (C1 6@5x5,
S2, C3 16@5x5, S4, C5 120, F6 84) with full C3 connectivity, plain pooling, a softmax classifier and a choice of
activation. Like the paper, inputs smaller than 32x32 are centred in a 32x32 field (MNIST's 28x28 digits were, Section
III.A), so C1..F6 have the paper's output sizes, and every image size is taken (`smallest_input()` is 1)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.models.layers import Conv, avg_pool, check_input_size, max_pool, pad_to, smallest_side
from jaxcnn.models.registry import register

_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}
_POOLS = {"avg": lambda x: avg_pool(x, 2), "max": lambda x: max_pool(x, 2, 2)}
FIELD = 32  # the paper's input field (Section II.B), in which smaller images are centred


def smallest_input() -> int:
  """C1, S2, C3, S4 and C5 (5x5 convs and 2x2/2 subsampling without padding) need the 32x32 field, which
  centring gives any image: LeNet-5 takes every size."""
  return smallest_side([(5, 1, "VALID"), (2, 2, "VALID"), (5, 1, "VALID"), (2, 2, "VALID"), (5, 1, "VALID")], FIELD)


class LeNet5(nn.Module):
  """Modern LeNet-5: conv-pool-conv-pool-fc-fc-fc."""

  num_classes: int
  activation: str = "relu"
  pooling: str = "max"

  smallest_input = nn.nowrap(staticmethod(smallest_input))

  @nn.compact
  def __call__(self, images, train: bool = False):
    check_input_size(self, images)
    act, pool = _ACTIVATIONS[self.activation], _POOLS[self.pooling]
    x = pad_to(images, FIELD)
    x = pool(act(Conv(6, (5, 5), padding="VALID", name="c1")(x)))
    x = pool(act(Conv(16, (5, 5), padding="VALID", name="c3")(x)))
    x = act(Conv(120, (5, 5), padding="VALID", name="c5")(x))  # 1x1x120, the paper's C5
    x = x.reshape(x.shape[0], -1)
    x = act(nn.Dense(84, name="f6")(x))
    return nn.Dense(self.num_classes, name="output")(x)


@register("lenet5")
def lenet5(num_classes: int, activation: str = "relu", pooling: str = "max") -> nn.Module:
  if activation not in _ACTIVATIONS:
    raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
  if pooling not in _POOLS:
    raise ValueError(f"pooling must be one of {sorted(_POOLS)}, got {pooling!r}")
  return LeNet5(num_classes=num_classes, activation=activation, pooling=pooling)


# Table I: the S2 maps (columns) each C3 map (row) reads. 60 connections of 5x5 weights -> 1,516 params.
C3_TABLE = (
  (0, 1, 2),
  (1, 2, 3),
  (2, 3, 4),
  (3, 4, 5),
  (0, 4, 5),
  (0, 1, 5),
  (0, 1, 2, 3),
  (1, 2, 3, 4),
  (2, 3, 4, 5),
  (0, 3, 4, 5),
  (0, 1, 4, 5),
  (0, 1, 2, 5),
  (0, 1, 3, 4),
  (1, 2, 4, 5),
  (0, 2, 3, 5),
  (0, 1, 2, 3, 4, 5),
)


def scaled_tanh(a):
  """Appendix A: f(a) = A tanh(S a) with A = 1.7159, S = 2/3, so that f(1) = 1 and f(-1) = -1."""
  return 1.7159 * jnp.tanh(2.0 / 3.0 * a)


def uniform_fan_in(key, shape, dtype=jnp.float32):
  """Appendix A's initialisation: U(-2.4/F, 2.4/F), F the fan-in of the unit (all axes but the last)."""
  limit = 2.4 / np.prod(shape[:-1])
  return jax.random.uniform(key, shape, dtype, -limit, limit)


class Subsampling(nn.Module):
  """S2/S4 (Section II.B): each unit adds its four 2x2 inputs, multiplies the sum by its map's trainable
  coefficient and adds the map's trainable bias; the squashing follows outside."""

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    # Appendix A's rule with fan-in 4: the coefficient multiplies the sum of four inputs.
    coefficient = self.param(
      "coefficient", lambda key, shape: jax.random.uniform(key, shape, minval=-0.6, maxval=0.6), (channels,)
    )
    bias = self.param("bias", nn.initializers.zeros_init(), (channels,))
    sums = avg_pool(x, 2) * 4.0
    return sums * coefficient + bias


class PartialConv(nn.Module):
  """C3: a 5x5 convolution in which output map i reads only the input maps table[i] (Section II.B).

  Only the connected weights are parameters (kernel [5, 5, connections]); they are scattered into a dense
  kernel for the convolution, so the unconnected weights are structural zeros, not trainable ones.
  """

  table: tuple[tuple[int, ...], ...]
  kernel_size: int = 5

  @nn.compact
  def __call__(self, x):
    rows = np.array([i for inputs in self.table for i in inputs])
    cols = np.array([o for o, inputs in enumerate(self.table) for _ in inputs])
    fan_in = np.array([len(self.table[o]) for o in cols]) * self.kernel_size**2

    def init(key, shape, dtype=jnp.float32):
      return jax.random.uniform(key, shape, dtype, -1.0, 1.0) * (2.4 / fan_in).astype(dtype)

    k = self.kernel_size
    kernel = self.param("kernel", init, (k, k, len(rows)))
    bias = self.param("bias", nn.initializers.zeros_init(), (len(self.table),))
    dense = jnp.zeros((k, k, x.shape[-1], len(self.table)), kernel.dtype).at[:, :, rows, cols].set(kernel)
    y = jax.lax.conv_general_dilated(x, dense, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


def rbf_prototypes(num_classes: int, units: int = 84) -> np.ndarray:
  """Fixed +-1 targets of the RBF output units (Section II.B).

  The paper draws each class's 84 targets from a stylised 7x12 bitmap of its ASCII character; those
  bitmaps are not published in machine-readable form, so each class gets a fixed pseudo-random +-1
  code instead (same role: far-apart points inside F6's non-saturated range). Not trainable, as in the paper.
  """
  return np.random.default_rng(1998).choice([-1.0, 1.0], size=(num_classes, units)).astype(np.float32)


class LeNet5_1998(nn.Module):
  """The paper's LeNet-5 (Fig. 2): C1-S2-C3-S4-C5-F6 with scaled tanh, then Euclidean RBF units.

  Output: logits = -y_i, with y_i = sum_j (x_j - w_ij)^2 the RBF penalty of class i. Cross-entropy on
  these logits is the paper's discriminative MAP criterion (Section II.C, eq. 9) without its constant j
  (the "rubbish class" term). Inputs smaller than 32x32 are centred in a 32x32 field, as in Section III.A.
  """

  num_classes: int

  smallest_input = nn.nowrap(staticmethod(smallest_input))

  @nn.compact
  def __call__(self, images, train: bool = False):
    check_input_size(self, images)
    conv = lambda features, name: nn.Conv(features, (5, 5), padding="VALID", kernel_init=uniform_fan_in, name=name)
    x = pad_to(images, FIELD)
    x = scaled_tanh(conv(6, "c1")(x))
    x = scaled_tanh(Subsampling(name="s2")(x))
    x = scaled_tanh(PartialConv(C3_TABLE, name="c3")(x))
    x = scaled_tanh(Subsampling(name="s4")(x))
    x = scaled_tanh(conv(120, "c5")(x))
    x = x.reshape(x.shape[0], -1)
    x = scaled_tanh(nn.Dense(84, kernel_init=uniform_fan_in, name="f6")(x))
    prototypes = jnp.asarray(rbf_prototypes(self.num_classes, x.shape[-1]), x.dtype)
    return -jnp.sum(jnp.square(x[:, None, :] - prototypes[None]), axis=-1)


@register("lenet5_1998")
def lenet5_1998(num_classes: int) -> nn.Module:
  return LeNet5_1998(num_classes=num_classes)
