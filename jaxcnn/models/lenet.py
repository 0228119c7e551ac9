"""LeNet-5: LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 1998, Section II.B and Fig. 2.

`lenet5` is the modern variant the tutorials train: the paper's layer sizes (C1 6@5x5, S2, C3 16@5x5,
S4, C5 120, F6 84) with full C3 connectivity, plain pooling, a softmax classifier and a choice of
activation. Like the paper, inputs smaller than 32x32 are centred in a 32x32 field (MNIST's 28x28
digits were, Section III.A), so C1..F6 have the paper's output sizes.
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxcnn.models.registry import register

_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}
_POOLS = {"avg": nn.avg_pool, "max": nn.max_pool}


def pad_to(images: jnp.ndarray, size: int) -> jnp.ndarray:
  """Centres NHWC images smaller than size x size in a zero field of that size."""
  height, width = images.shape[1:3]
  pad_h, pad_w = max(size - height, 0), max(size - width, 0)
  if not (pad_h or pad_w):
    return images
  return jnp.pad(images, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))


class LeNet5(nn.Module):
  """Modern LeNet-5: conv-pool-conv-pool-fc-fc-fc."""

  num_classes: int
  activation: str = "relu"
  pooling: str = "max"

  @nn.compact
  def __call__(self, images, train: bool = False):
    act, pool = _ACTIVATIONS[self.activation], _POOLS[self.pooling]
    x = pad_to(images, 32)
    x = pool(act(nn.Conv(6, (5, 5), padding="VALID", name="c1")(x)), (2, 2), strides=(2, 2))
    x = pool(act(nn.Conv(16, (5, 5), padding="VALID", name="c3")(x)), (2, 2), strides=(2, 2))
    x = act(nn.Conv(120, (5, 5), padding="VALID", name="c5")(x))  # 1x1x120, the paper's C5
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
