"""ResNet: He, Zhang, Ren, Sun, "Deep residual learning for image recognition", CVPR 2016:
Section 3.3 (shortcut options), Table 1 (ImageNet depths), Section 3.4 (BN, He initialisation) and
Section 4.2 (the CIFAR-10 networks).

One builder reads the depth tables below. ImageNet family (Table 1): stem conv 7x7/2 64 + max-pool 3/2,
stages conv2_x..conv5_x with widths 64-128-256-512 (x4 out for bottlenecks), global average pool, FC.
Parameters for 1000 classes with shortcut B: resnet18 11,689,512, resnet34 21,797,672, resnet50
25,557,032, resnet101 44,549,160, resnet152 60,192,808. CIFAR family (Section 4.2): 6n+2 layers, a 3x3
16-filter stem, three stages of n basic blocks at widths 16-32-64 on 32/16/8 maps, shortcut A:
resnet20 269,722, resnet32 464,154, resnet44 658,586, resnet56 853,018, resnet110 1,727,962, resnet1202
19,421,274 (10 classes).

Options:
  shortcut      "A": identity, subsampled and zero-padded where dimensions grow (no parameters);
                "B": 1x1 projections where dimensions grow, identity elsewhere (ImageNet default);
                "C": projections on every block.
  stride_in_3x3 False (paper): a downsampling bottleneck strides in its first 1x1 conv. True: the "v1.5"
                of torchvision and NVIDIA, striding in the 3x3 (more multiply-adds, ~0.5% better top-1).
  small_input   (ImageNet family; None = automatic below 64 pixels) a 3x3/1 stem without max-pool, the
                usual CIFAR adaptation of ResNet-18/50, so 28-32 pixel images keep 28-14-7-4 maps.

Smallest input (`smallest_input()`, from the stride-2 convs and pools): 9 pixels with basic blocks or
stride_in_3x3, 5 with the paper's bottlenecks and in the CIFAR family; the ImageNet stem alone 33 and 17.

Every conv is followed by BatchNorm (no conv bias), ReLU after the addition. Convs use He initialisation
N(0, 2/(k*k*out_channels)) (fan-out, as the authors' fb.resnet.torch and torchvision); BN starts at
scale 1, shift 0.
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxcnn.models.layers import (
  Conv,
  batch_norm,
  check_input_size,
  max_pool,
  smallest_side,
  stem_smallest_side,
  use_small_stem,
)
from jaxcnn.models.registry import register

IMAGENET_DEPTHS = {
  18: (False, (2, 2, 2, 2)),
  34: (False, (3, 4, 6, 3)),
  50: (True, (3, 4, 6, 3)),
  101: (True, (3, 4, 23, 3)),
  152: (True, (3, 8, 36, 3)),
}  # (bottleneck, blocks per stage)
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
HE_NORMAL = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
SHORTCUTS = ("A", "B", "C")


def conv(features: int, kernel: int, stride: int, name: str) -> nn.Module:
  return Conv(
    features, (kernel, kernel), strides=stride, padding=kernel // 2, use_bias=False, kernel_init=HE_NORMAL, name=name
  )


class Block(nn.Module):
  """Basic block (two 3x3 convs) or bottleneck (1x1 reduce, 3x3, 1x1 expand x4), Fig. 5."""

  features: int
  stride: int
  bottleneck: bool
  shortcut: str
  stride_in_3x3: bool

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.bottleneck:
      first, middle = (1, self.stride) if self.stride_in_3x3 else (self.stride, 1)
      plan = ((self.features, 1, first), (self.features, 3, middle), (4 * self.features, 1, 1))
    else:
      plan = ((self.features, 3, self.stride), (self.features, 3, 1))
    y = x
    for i, (features, kernel, stride) in enumerate(plan, start=1):
      y = batch_norm(train, name=f"bn{i}")(conv(features, kernel, stride, f"conv{i}")(y))
      if i < len(plan):
        y = nn.relu(y)
    out = plan[-1][0]
    grows = self.stride != 1 or x.shape[-1] != out
    if self.shortcut == "C" or (self.shortcut == "B" and grows):
      x = batch_norm(train, name="proj_bn")(conv(out, 1, self.stride, "proj")(x))
    elif grows:
      x = x[:, :: self.stride, :: self.stride]
      x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, out - x.shape[-1])))
    return nn.relu(y + x)


class ResNet(nn.Module):
  num_classes: int
  stage_sizes: tuple[int, ...]
  widths: tuple[int, ...] = (64, 128, 256, 512)
  bottleneck: bool = False
  cifar: bool = False
  shortcut: str = "B"
  stride_in_3x3: bool = False
  small_input: bool | None = None

  @nn.nowrap
  def smallest_input(self) -> int:
    """Each stage after the first opens with a stride-2 conv: a 3x3 in basic blocks and in the "v1.5"
    bottleneck, the first 1x1 in the paper's (its 1x1/2 shortcut beside it); the ImageNet stem adds conv1's
    7x7/2 and the 3/2 max-pool."""
    kernel = 3 if not self.bottleneck or self.stride_in_3x3 else 1
    stages = [(kernel, 2, kernel // 2)] * (len(self.stage_sizes) - 1)
    imagenet = smallest_side([(7, 2, 3), (3, 2, 1), *stages])
    return stem_smallest_side(True if self.cifar else self.small_input, smallest_side(stages), imagenet)

  @nn.compact
  def __call__(self, images, train: bool = False):
    check_input_size(self, images)
    if self.shortcut not in SHORTCUTS:
      raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {self.shortcut!r}")
    imagenet_stem = not (self.cifar or use_small_stem(self.small_input, images))
    x = conv(self.widths[0], 7 if imagenet_stem else 3, 2 if imagenet_stem else 1, "conv1")(images)
    x = nn.relu(batch_norm(train, name="bn1")(x))
    if imagenet_stem:
      x = max_pool(x, 3, 2, padding=((1, 1), (1, 1)))
    for stage, (blocks, features) in enumerate(zip(self.stage_sizes, self.widths)):
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        x = Block(
          features, stride, self.bottleneck, self.shortcut, self.stride_in_3x3, name=f"conv{stage + 2}_{block + 1}"
        )(x, train)
    return nn.Dense(self.num_classes, name="fc")(jnp.mean(x, axis=(1, 2)))


def _register_imagenet(depth: int):
  bottleneck, stage_sizes = IMAGENET_DEPTHS[depth]

  @register(f"resnet{depth}")
  def build(num_classes: int, **options) -> nn.Module:
    return ResNet(num_classes=num_classes, stage_sizes=stage_sizes, bottleneck=bottleneck, **options)


def _register_cifar(depth: int):
  @register(f"resnet{depth}")
  def build(num_classes: int, shortcut: str = "A", **options) -> nn.Module:
    n = (depth - 2) // 6
    return ResNet(
      num_classes=num_classes, stage_sizes=(n, n, n), widths=(16, 32, 64), cifar=True, shortcut=shortcut, **options
    )


for _depth in IMAGENET_DEPTHS:
  _register_imagenet(_depth)
for _depth in CIFAR_DEPTHS:
  _register_cifar(_depth)
