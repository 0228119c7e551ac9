"""The tutorials' baselines for Fashion-MNIST, against which the papers' networks are compared.

`mlp`: TensorFlow's "Basic classification: classify images of clothing" tutorial - flatten, Dense 128
ReLU, Dense 10 (101,770 parameters on 28x28x1); `hidden=(512, 512)` gives PyTorch's quickstart MLP.
`simple_cnn`: the Flax MNIST example's CNN - conv 32@3x3, ReLU, 2x2 average pool, conv 64@3x3, ReLU,
2x2 average pool, Dense 256 ReLU, Dense 10 (824,458 parameters on 28x28x1). Flax's default
initialisation (LeCun normal, zero biases), as in both tutorials' frameworks' defaults. Smallest inputs
(`smallest_input()`): any image for `mlp`, 4 pixels for `simple_cnn` (its two 2x2 pools without padding).
"""

from collections.abc import Sequence

import flax.linen as nn

from jaxcnn.models.layers import Conv, avg_pool, check_input_size, smallest_side
from jaxcnn.models.registry import register


class MLP(nn.Module):
  num_classes: int
  hidden: Sequence[int] = (128,)

  @nn.nowrap
  def smallest_input(self) -> int:
    """Nothing shrinks: every image of at least one pixel is a vector of features."""
    return smallest_side([])

  @nn.compact
  def __call__(self, images, train: bool = False):
    check_input_size(self, images)
    x = images.reshape(images.shape[0], -1)
    for i, width in enumerate(self.hidden, start=1):
      x = nn.relu(nn.Dense(width, name=f"dense{i}")(x))
    return nn.Dense(self.num_classes, name="output")(x)


class SimpleCNN(nn.Module):
  num_classes: int

  @nn.nowrap
  def smallest_input(self) -> int:
    """The two 2x2 average pools without padding (the 3x3 convs are 'SAME'): 4 -> 2 -> 1."""
    return smallest_side([(2, 2, "VALID")] * 2)

  @nn.compact
  def __call__(self, images, train: bool = False):
    check_input_size(self, images)
    x = images
    for i, features in enumerate((32, 64), start=1):
      x = nn.relu(Conv(features, (3, 3), name=f"conv{i}")(x))
      x = avg_pool(x, 2)
    x = nn.relu(nn.Dense(256, name="dense")(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes, name="output")(x)


@register("mlp")
def mlp(num_classes: int, hidden: Sequence[int] = (128,)) -> nn.Module:
  return MLP(num_classes=num_classes, hidden=tuple(hidden))


@register("simple_cnn")
def simple_cnn(num_classes: int) -> nn.Module:
  return SimpleCNN(num_classes=num_classes)
