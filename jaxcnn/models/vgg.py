"""VGG: Simonyan and Zisserman, "Very deep convolutional networks for large-scale image recognition",
ICLR 2015, Section 2 (Table 1: configurations A-E), Section 3.1 (training) and 3.2 (dense testing).

One builder reads the configuration table below (the paper's Table 1 columns: N = conv3-N, 1xN =
conv1-N, M = 2x2/2 max-pool, LRN = local response normalisation as in AlexNet) and appends the three
FC layers 4096-4096-classes with ReLU and dropout 0.5 on the first two. Parameters for 1000 classes:
A 132,863,336, B 133,047,848, C 133,638,952, D 138,357,544, E 143,667,240; the BatchNorm twins
(torchvision's layout: conv -> BN -> ReLU, conv biases kept) add 2 per conv channel, e.g. vgg11_bn
132,868,840 and vgg16_bn 138,365,992.

Dense evaluation (Section 3.2) is built in: FC layers are stored and applied as convolutions (fc6 a
7x7 conv on the 7x7x512 map, fc7 and fc8 1x1 convs) - on a 224 input exactly the FC layers, with the
same parameter count - and the class-score map is averaged spatially. A larger test image therefore
gets the paper's dense, fully-convolutional evaluation with the same weights. The paper tests no image
below 224 pixels (Q >= S >= 224); there a side of the final map is shorter than fc6's 7x7 window, and it
is stretched to 7 pixels as torchvision's adaptive average pooling stretches it (each pixel repeated
once or twice), so the same weights compute torchvision's function on inputs of 64, 96, ..., 224 pixels
(multiples of 32, where its floor pooling and the ceil windows here agree). Pooling uses ceil
('SAME') windows throughout, so 28 pixels shrink 28-14-7-4-2-1 instead of reaching 0 (on 224 inputs these
windows are exactly the paper's); 17 pixels (17-9-5-3-2-1) are the fewest that leave each pool two pixels
to pool. Small images (`small_input`, None = automatic below 64 pixels): fc6 becomes a 1x1 conv on the
final map, i.e. the FC layers on 512 features rather than on a stretched map. fc6's window is thus fixed
by the option, not by the image: weights trained with `small_input=True` evaluate densely on larger
images when the option is passed explicitly.

Initialisation (`initializer`): "normal" is Section 3.1's random initialisation, weights N(0, 0.01^2) and zero
biases. (The paper writes "10^-2 variance"; its released models and most re-implementations use
standard deviation 0.01, and std 0.1 would grow activations ~5x per 3x3x512 layer.) The paper trained
only A from it and initialised deeper nets from A, then noted that Glorot & Bengio's initialisation
trains them without pre-training: "glorot" (Glorot uniform, zero biases), which the configs use.
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxcnn.models.layers import (
  Conv,
  LocalResponseNorm,
  adaptive_avg_pool,
  batch_norm,
  check_input_size,
  dropout,
  kernel_init,
  max_pool,
  smallest_side,
  use_small_stem,
)
from jaxcnn.models.registry import register

CONFIGS = {
  "A": "64 M 128 M 256 256 M 512 512 M 512 512 M",
  "A-LRN": "64 LRN M 128 M 256 256 M 512 512 M 512 512 M",
  "B": "64 64 M 128 128 M 256 256 M 512 512 M 512 512 M",
  "C": "64 64 M 128 128 M 256 256 1x256 M 512 512 1x512 M 512 512 1x512 M",
  "D": "64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M",
  "E": "64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M",
}

FC6_WINDOW = 7  # the 7x7x512 map that fc6 reads on a 224 input (Table 1's 224 -> 7 after five pools)


class VGG(nn.Module):
  num_classes: int
  config: str
  use_bn: bool = False
  initializer: str = "normal"
  dropout_rate: float = 0.5
  small_input: bool | None = None

  @nn.nowrap
  def smallest_input(self) -> int:
    """The 2x2/2 max-pools are the only layers that shrink the map, on either path."""
    return smallest_side([(2, 2, "SAME")] * CONFIGS[self.config].split().count("M"))

  @nn.compact
  def __call__(self, images, train: bool = False):
    check_input_size(self, images)
    weights = kernel_init(self.initializer)

    def conv(x, features, kernel, name, padding):
      return Conv(features, (kernel, kernel), padding=padding, kernel_init=weights, name=name)(x)

    x, index = images, 0
    for token in CONFIGS[self.config].split():
      if token == "M":
        x = max_pool(x, 2, 2, padding="SAME")
      elif token == "LRN":
        x = LocalResponseNorm()(x)
      else:
        index += 1
        kernel, features = (1, int(token[2:])) if token.startswith("1x") else (3, int(token))
        x = conv(x, features, kernel, f"conv{index}", padding=kernel // 2)
        if self.use_bn:
          x = batch_norm(train, name=f"bn{index}")(x)
        x = nn.relu(x)
    if use_small_stem(self.small_input, images):
      x = conv(x, 4096, 1, "fc6", padding="VALID")
    else:
      # A final map shorter than fc6's window would leave an empty score map, whose mean is NaN.
      x = adaptive_avg_pool(x, (max(x.shape[1], FC6_WINDOW), max(x.shape[2], FC6_WINDOW)))
      x = conv(x, 4096, FC6_WINDOW, "fc6", padding="VALID")
    x = dropout(self.dropout_rate, train)(nn.relu(x))
    x = dropout(self.dropout_rate, train)(nn.relu(conv(x, 4096, 1, "fc7", padding="VALID")))
    scores = conv(x, self.num_classes, 1, "fc8", padding="VALID")
    return jnp.mean(scores, axis=(1, 2))


def _register(name: str, config: str, use_bn: bool):
  @register(name)
  def build(num_classes: int, **options) -> nn.Module:
    return VGG(num_classes=num_classes, config=config, use_bn=use_bn, **options)


for _depth, _config in ((11, "A"), (13, "B"), (16, "D"), (19, "E")):
  _register(f"vgg{_depth}", _config, use_bn=False)
  _register(f"vgg{_depth}_bn", _config, use_bn=True)  # torchvision's BN twins
_register("vgg11_lrn", "A-LRN", use_bn=False)
_register("vgg16_c", "C", use_bn=False)
