"""GoogLeNet (Inception v1): Szegedy et al., "Going deeper with convolutions", CVPR 2015, Section 5
(Table 1, Fig. 3) and Section 6 (training).

`googlenet` is the paper's network: the stem conv 7x7/2 -> max-pool 3/2 -> LRN -> conv 1x1 64 -> conv
3x3 192 -> LRN -> max-pool 3/2 (Fig. 3), the nine Inception modules of Table 1 with max-pools 3/2
after 3b and 4e, global 7x7 average pooling, dropout 0.4 and a linear classifier. Every conv has a bias
and a ReLU. Two auxiliary classifiers on the outputs of 4a and 4d (Section 5): average pool 5x5/3, conv
1x1 128, FC 1024, dropout 0.7, linear; they run in training only, where their logits are sown into the
`aux_logits` collection (the train step weights their losses by `config.aux_loss_weight`, 0.3 in the
paper). Their parameters live under `aux1`/`aux2` and exist from `init` on.

The paper gives no LRN constants; we use those of Caffe's bvlc_googlenet (local_size 5, alpha 1e-4
divided by the window, beta 0.75, k 1), i.e. LocalResponseNorm(k=1, alpha=2e-5). Nor does it give the
initialisation: Glorot-uniform weights and 0.2 biases, again bvlc_googlenet's.

`googlenet_bn` is torchvision's layout (so its weights load): conv without bias -> BatchNorm(eps 1e-3)
-> ReLU everywhere, no LRN, the "5x5" branch built with 3x3 kernels (a known torchvision bug kept for
weight compatibility, pytorch/vision#906), a 2x2/2 pool after 4e, dropout 0.2, N(0, 0.01^2) weights
(torchvision truncates at +-2, i.e. 200 sigma, so in effect not at all); 6,624,904 parameters for 1000
classes without the auxiliary heads.

Small images (`small_input`, None = automatic below 64 pixels): the stem keeps its layers but conv1
gets stride 1 and the first max-pool is skipped, so 28 pixels give 28-14-7-4 feature maps rather than
vanishing; the final pooling is a global average (= the paper's 7x7 pool on 224 inputs). Smallest input
(`smallest_input()`, from the strided convs and pools): 9 pixels for `googlenet`, 5 for `googlenet_bn` (its
last pool is 2x2); on the ImageNet stem alone 33 and 17.
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxcnn.models.layers import (
  ConvBlock,
  LocalResponseNorm,
  check_input_size,
  dropout,
  max_pool,
  smallest_side,
  stem_smallest_side,
  use_small_stem,
)
from jaxcnn.models.registry import register

# Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj; "M" = max-pool between stages.
INCEPTION = (
  ("3a", (64, 96, 128, 16, 32, 32)),
  ("3b", (128, 128, 192, 32, 96, 64)),
  "M",
  ("4a", (192, 96, 208, 16, 48, 64)),
  ("4b", (160, 112, 224, 24, 64, 64)),
  ("4c", (128, 128, 256, 24, 64, 64)),
  ("4d", (112, 144, 288, 32, 64, 64)),
  ("4e", (256, 160, 320, 32, 128, 128)),
  "M",
  ("5a", (256, 160, 320, 32, 128, 128)),
  ("5b", (384, 192, 384, 48, 128, 128)),
)
AUX_AFTER = {"4a": "aux1", "4d": "aux2"}


class Inception(nn.Module):
  """Four parallel branches concatenated on channels: 1x1; 1x1 -> 3x3; 1x1 -> 5x5; max-pool 3/1 -> 1x1."""

  widths: Sequence[int]
  conv: functools.partial  # ConvBlock with the variant's BN and initialisation bound
  five_kernel: int = 5

  @nn.compact
  def __call__(self, x, train: bool = False):
    c1, c3r, c3, c5r, c5, proj = self.widths
    branches = [
      self.conv(c1, 1, name="b1x1")(x, train),
      self.conv(c3, 3, name="b3x3")(self.conv(c3r, 1, name="b3x3_reduce")(x, train), train),
      self.conv(c5, self.five_kernel, name="b5x5")(self.conv(c5r, 1, name="b5x5_reduce")(x, train), train),
      self.conv(proj, 1, name="pool_proj")(max_pool(x, 3, 1, padding="SAME"), train),
    ]
    return jnp.concatenate(branches, axis=-1)


class AuxClassifier(nn.Module):
  """Section 5's side head: avg-pool 5x5/3 -> conv 1x1 128 -> FC 1024 -> ReLU -> dropout 0.7 -> linear."""

  num_classes: int
  conv: functools.partial

  @nn.compact
  def __call__(self, x, train: bool = False):
    # 5x5/3 turns 14x14 into 4x4; small inputs reach 4a with smaller maps, pooled whole along a short side.
    x = nn.avg_pool(x, (min(5, x.shape[1]), min(5, x.shape[2])), strides=(3, 3))
    x = self.conv(128, 1, name="conv")(x, train).reshape(x.shape[0], -1)
    x = dropout(0.7, train)(nn.relu(nn.Dense(1024, name="fc1")(x)))
    return nn.Dense(self.num_classes, name="fc2")(x)


class GoogLeNet(nn.Module):
  num_classes: int
  use_bn: bool = False
  lrn: bool = True
  five_kernel: int = 5
  last_pool_window: int = 3
  dropout_rate: float = 0.4
  aux_heads: bool = True
  small_input: bool | None = None

  @nn.nowrap
  def smallest_input(self) -> int:
    """The max-pools 3/2 after conv2 and 3b and the last one after 4e (all 'SAME'), and on the ImageNet
    stem conv1's 7x7/2 and the first pool before them. The auxiliary heads' pools shrink to fit their map."""
    pools = [(3, 2, "SAME"), *((window, 2, "SAME") for window in self.pool_windows())]
    imagenet = smallest_side([(7, 2, 3), (3, 2, "SAME"), *pools])
    return stem_smallest_side(self.small_input, smallest_side(pools), imagenet)

  @nn.nowrap
  def pool_windows(self) -> tuple[int, ...]:
    """The windows of the max-pools between Table 1's stages ("M"), in order."""
    return (3, self.last_pool_window)

  @nn.compact
  def __call__(self, images, train: bool = False):
    check_input_size(self, images)
    if self.use_bn:
      conv = functools.partial(ConvBlock, use_bn=True, bn_epsilon=1e-3, kernel_init=nn.initializers.normal(0.01))
    else:
      conv = functools.partial(
        ConvBlock, kernel_init=nn.initializers.glorot_uniform(), bias_init=nn.initializers.constant(0.2)
      )
    normalize = LocalResponseNorm(k=1.0, alpha=2e-5) if self.lrn else (lambda x: x)
    small = use_small_stem(self.small_input, images)

    x = conv(64, 7, stride=1 if small else 2, name="conv1")(images, train)
    if not small:
      x = max_pool(x, 3, 2, padding="SAME")
    x = normalize(x)
    x = conv(64, 1, name="conv2_reduce")(x, train)
    x = normalize(conv(192, 3, name="conv2")(x, train))
    x = max_pool(x, 3, 2, padding="SAME")
    pools = iter(self.pool_windows())
    for entry in INCEPTION:
      if entry == "M":
        window = next(pools)
        x = max_pool(x, window, 2, padding="SAME")
        continue
      name, widths = entry
      x = Inception(widths, conv, self.five_kernel, name=f"inception{name}")(x, train)
      if self.aux_heads and name in AUX_AFTER and (train or self.is_initializing()):
        aux_logits = AuxClassifier(self.num_classes, conv, name=AUX_AFTER[name])(x, train)
        if train:
          self.sow("aux_logits", f"{AUX_AFTER[name]}_logits", aux_logits)
    x = jnp.mean(x, axis=(1, 2))
    x = dropout(self.dropout_rate, train)(x)
    return nn.Dense(self.num_classes, name="fc")(x)


@register("googlenet")
def googlenet(num_classes: int, **options) -> nn.Module:
  return GoogLeNet(num_classes=num_classes, **options)


@register("googlenet_bn")
def googlenet_bn(num_classes: int, **options) -> nn.Module:
  return GoogLeNet(
    num_classes=num_classes, use_bn=True, lrn=False, five_kernel=3, last_pool_window=2, dropout_rate=0.2, **options
  )
