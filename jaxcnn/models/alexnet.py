"""AlexNet: Krizhevsky, Sutskever, Hinton, "ImageNet classification with deep convolutional neural
networks", NIPS 2012, Section 3 (architecture, Fig. 2) and Section 5 (initialisation).

Layers (Section 3.5): conv1 96@11x11/4 -> ReLU -> LRN -> max-pool 3/2 (overlapping, Section 3.4);
conv2 256@5x5 -> ReLU -> LRN -> pool; conv3 384@3x3; conv4 384@3x3; conv5 256@3x3 -> pool; fc6 4096,
fc7 4096 (ReLU, dropout 0.5, Section 4.2); fc8 = classes. Per-layer outputs on a 227x227 input:
55x55x96, 27x27x256, 13x13x384, 13x13x384, 13x13x256, 6x6x256 after the last pool, 4096, 4096, 1000.
The paper says 224x224 input, but 11x11/4 without padding needs 227 to give 55x55 (a known erratum; Caffe
crops 227): smaller inputs (the paper's 224, or anything from 64 pixels up) are centred in a 227 field.
Smallest input (`smallest_input()`): 15 pixels, which the three 3/2 pools without padding need (small stem).

Variants (parameters for 1000 classes, 3-channel input):
  alexnet          the paper's layers in one tower (what most people call AlexNet): 62,378,344.
  alexnet_grouped  the paper's two GPU towers as grouped convolutions (groups=2) on conv2, conv4 and conv5,
                   which read only their own tower's maps (conv3 and the FC layers cross), and LRN within
                   each tower: 60,965,224. jaxcnn.model_parallel runs it with a tower per device.
  alexnet_owt      torchvision's layout from "One weird trick" (Krizhevsky 2014): 64-192-384-256-256,
                   no LRN, no groups, and torchvision's conv1 padding of 2 on each side (a 224 input then
                   gives 55x55 too, with torchvision's pixel alignment, so its weights carry over
                   exactly): 61,100,840.

Initialisation (Section 5): weights N(0, 0.01^2); biases 1 on conv2, conv4, conv5, fc6 and fc7 (to give
the ReLUs positive inputs early), 0 elsewhere. Caffe's reference model found bias 1 could stall training
and used 0.1: `hidden_bias=0.1` reproduces that.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models.layers import (
  Conv,
  LocalResponseNorm,
  check_input_size,
  dropout,
  kernel_init,
  max_pool,
  pad_to,
  smallest_side,
  stem_smallest_side,
  use_small_stem,
)
from jaxcnn.models.registry import register

PAPER_INPUT = 227


class AlexNet(nn.Module):
  """AlexNet; `widths` are conv1..conv5's filter counts, `groups` applies to conv2, conv4 and conv5, and
  `fc_width` is fc6's and fc7's units.

  `small_input` (None = automatic below 64 pixels) replaces conv1's 11x11/4 by a 5x5/1 'SAME' conv, so
  a 28x28 image keeps the paper's three pooling stages (28 -> 13 -> 6 -> 2) instead of vanishing.
  `conv1_padding` None centres the image in a 227 field for conv1 (the paper); an int pads every side
  by that many zeros instead (torchvision's 2). `initializer` "normal" is Section 5's N(0, 0.01^2);
  "he" with `hidden_bias=0` trains the small-input stem, which the paper's does not (layers.KERNEL_INITS).

  `tower_axis` names a device axis over which the network is split into towers, as the paper split it over
  two GPUs (Section 3.2; jaxcnn.model_parallel): the module is then one tower, without groups, `widths`,
  `fc_width` and `num_classes` its share of each layer, and it gathers the towers' maps where the GPUs
  communicated.
  """

  num_classes: int
  widths: Sequence[int] = (96, 256, 384, 384, 256)
  groups: int = 1
  fc_width: int = 4096
  lrn: bool = True
  dropout_rate: float = 0.5
  hidden_bias: float = 1.0
  initializer: str = "normal"
  small_input: bool | None = None
  conv1_padding: int | None = None
  tower_axis: str | None = None

  @nn.nowrap
  def smallest_input(self) -> int:
    """The three 3/2 max-pools without padding need 15 pixels (15 -> 7 -> 3 -> 1), which the small stem's
    5x5/1 conv keeps; conv1's 11x11/4 needs 67 before them, which the paper's 227 field gives any image and
    torchvision's 2-pixel padding 63-pixel ones (the fewest that then reach 15)."""
    pools = [(3, 2, "VALID")] * 3
    if self.conv1_padding is None:
      imagenet = smallest_side([(11, 4, "VALID"), *pools], padded_to=PAPER_INPUT)
    else:
      imagenet = smallest_side([(11, 4, self.conv1_padding), *pools])
    return stem_smallest_side(self.small_input, smallest_side(pools), imagenet)

  @nn.compact
  def __call__(self, images, train: bool = False):
    check_input_size(self, images)
    weights = kernel_init(self.initializer)
    hidden_bias = nn.initializers.constant(self.hidden_bias)

    def conv(x, index, kernel, stride=1, padding=None, groups=1, bias=nn.initializers.zeros_init()):
      x = Conv(
        self.widths[index - 1],
        (kernel, kernel),
        strides=stride,
        padding=kernel // 2 if padding is None else padding,
        feature_group_count=groups,
        kernel_init=weights,
        bias_init=bias,
        name=f"conv{index}",
      )(x)
      return nn.relu(x)

    def across_towers(x):
      # "The GPUs communicate only in certain layers" (Section 3.2): conv3 and the FC layers read every tower's maps.
      return x if self.tower_axis is None else jax.lax.all_gather(x, self.tower_axis, axis=-1, tiled=True)

    def normalize(x):
      if not self.lrn:
        return x
      # Each tower normalises over its own maps only: the paper ran LRN on each GPU (Section 3.3).
      return jnp.concatenate([LocalResponseNorm()(part) for part in jnp.split(x, self.groups, axis=-1)], axis=-1)

    if use_small_stem(self.small_input, images):
      x = conv(images, 1, 5)
    elif self.conv1_padding is None:
      x = conv(pad_to(images, PAPER_INPUT), 1, 11, stride=4, padding="VALID")
    else:
      x = conv(images, 1, 11, stride=4, padding=self.conv1_padding)
    x = max_pool(normalize(x), 3, 2)
    x = max_pool(normalize(conv(x, 2, 5, groups=self.groups, bias=hidden_bias)), 3, 2)
    x = conv(across_towers(x), 3, 3)
    x = conv(x, 4, 3, groups=self.groups, bias=hidden_bias)
    x = max_pool(conv(x, 5, 3, groups=self.groups, bias=hidden_bias), 3, 2)
    x = across_towers(x).reshape(x.shape[0], -1)  # gathered first: fc6's rows follow both towers' (H, W, C) order
    for name in ("fc6", "fc7"):
      x = nn.relu(nn.Dense(self.fc_width, kernel_init=weights, bias_init=hidden_bias, name=name)(x))
      x = across_towers(dropout(self.dropout_rate, train)(x))
    return nn.Dense(self.num_classes, kernel_init=weights, name="fc8")(x)


@register("alexnet")
def alexnet(num_classes: int, **options) -> nn.Module:
  return AlexNet(num_classes=num_classes, **options)


@register("alexnet_grouped")
def alexnet_grouped(num_classes: int, **options) -> nn.Module:
  return AlexNet(num_classes=num_classes, groups=2, **options)


@register("alexnet_owt")
def alexnet_owt(num_classes: int, **options) -> nn.Module:
  return AlexNet(num_classes=num_classes, widths=(64, 192, 384, 256, 256), lrn=False, **{"conv1_padding": 2, **options})
