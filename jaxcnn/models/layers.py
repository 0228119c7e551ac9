"""Layers the papers use that Flax does not ship, and conventions shared by the model families."""

import contextlib
import contextvars

import flax.linen as nn
import jax.numpy as jnp

# Images below this many pixels a side are "small" (MNIST, CIFAR): a family's `small_input=None` picks
# its small-input stem for them, because the ImageNet stems downsample 28- or 32-pixel images to nothing.
SMALL_INPUT_BELOW = 64


def use_small_stem(small_input: bool | None, images: jnp.ndarray) -> bool:
  """Resolves a family's `small_input` option; None decides by the (static) image height."""
  return images.shape[1] < SMALL_INPUT_BELOW if small_input is None else small_input


# Weight initialisations a family offers through its `initializer` option. "normal" is the N(0, 0.01^2)
# of AlexNet (Section 5) and VGG (Section 3.1); "glorot" the Glorot & Bengio uniform VGG's Section 3.1
# names for training deep nets from scratch; "he" He et al.'s fan-in normal for ReLU stacks. AlexNet's
# paper initialisation does not train its small-input stem on Fashion-MNIST: at lr 0.01 the loss went
# 3.1 -> 20.9 in five steps and then sat at ln(10) with dead ReLUs; "he" with zero biases trained.
KERNEL_INITS = {
    "normal": nn.initializers.normal(0.01),
    "glorot": nn.initializers.glorot_uniform(),
    "he": nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
}


def kernel_init(name: str) -> nn.initializers.Initializer:
  if name not in KERNEL_INITS:
    raise ValueError(f"initializer must be one of {sorted(KERNEL_INITS)}, got {name!r}")
  return KERNEL_INITS[name]


# The named device axis a data-parallel train step binds (jaxcnn.parallel.AXIS); None outside one, so a
# model applied on its own (tests, notebooks) normalises over its local batch.
_BATCH_NORM_AXIS: contextvars.ContextVar[str | None] = contextvars.ContextVar("batch_norm_axis", default=None)


@contextlib.contextmanager
def cross_replica_batch_norm(axis_name: str):
  """While tracing inside, training-mode BatchNorm averages its statistics over `axis_name`, so the
  statistics are those of the global batch, whatever the device count."""
  token = _BATCH_NORM_AXIS.set(axis_name)
  try:
    yield
  finally:
    _BATCH_NORM_AXIS.reset(token)


def batch_norm(train: bool, epsilon: float = 1e-5, name: str | None = None) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.1 there is 0.9 here), so torchvision weights carry over."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=epsilon, name=name,
                      axis_name=_BATCH_NORM_AXIS.get() if train else None)


def max_pool(x: jnp.ndarray, window: int, stride: int, padding="VALID") -> jnp.ndarray:
  """Max-pooling over NHWC. Non-overlapping windows that tile the image exactly (LeNet-5's 2x2/2, VGG's on
  224 pixels, where 'SAME' pads nothing) are taken as a reshape and a max: XLA:CPU's gradient of a windowed max (select-and-scatter) is slow, the
  gradient of a plain max reduction is an elementwise compare. Same forward values; the gradients differ
  only at ties inside a window (shared among them rather than given to the first), which after a ReLU are
  zeros whose gradient the ReLU stops anyway. Measured +31% train-step images/s for LeNet-5 on 2 CPU cores.
  """
  height, width = x.shape[1:3]
  if window == stride and padding in ("VALID", "SAME") and height % window == 0 and width % window == 0:
    n, _, _, channels = x.shape
    return x.reshape(n, height // window, window, width // window, window, channels).max(axis=(2, 4))
  return nn.max_pool(x, (window, window), strides=(stride, stride), padding=padding)


class LocalResponseNorm(nn.Module):
  """Local response normalisation across channels, AlexNet paper Section 3.3:

      b[c] = a[c] / (k + alpha * sum(a[c']^2 for c' in [c - n//2, c + n//2], clipped to the channels))^beta

  The defaults are the paper's k=2, n=5, alpha=1e-4, beta=0.75. `alpha` multiplies the plain sum; it is
  NOT divided by n. The same function in other frameworks:
    TensorFlow  tf.nn.local_response_normalization(depth_radius=2, bias=2, alpha=1e-4, beta=0.75) (no /n)
    PyTorch     nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2)   (divides alpha by size)
    Caffe       LRN(local_size=5, alpha=5e-4, beta=0.75, k=2)               (divides alpha by local_size)
  Caffe's bvlc_alexnet (alpha=1e-4, k unset=1) is therefore a weaker normalisation than the paper's
  (2e-5 per squared activation, k=1); to reproduce it here pass k=1, alpha=2e-5.
  """

  k: float = 2.0
  n: int = 5
  alpha: float = 1e-4
  beta: float = 0.75

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    channels = x.shape[-1]
    squares = jnp.pad(jnp.square(x), [(0, 0)] * (x.ndim - 1) + [(self.n // 2, (self.n - 1) // 2)])
    sums = sum(squares[..., i : i + channels] for i in range(self.n))
    return x / (self.k + self.alpha * sums) ** self.beta


class ConvBlock(nn.Module):
  """conv -> [BatchNorm] -> ReLU, with PyTorch's symmetric padding k//2, so output sizes and torchvision
  weights match. With BatchNorm the conv has no bias (BN's shift replaces it)."""

  features: int
  kernel: int
  stride: int = 1
  use_bn: bool = False
  bn_epsilon: float = 1e-5
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(self.features, (self.kernel, self.kernel), strides=self.stride, padding=self.kernel // 2,
                use_bias=not self.use_bn, kernel_init=self.kernel_init, bias_init=self.bias_init, name="conv")(x)
    if self.use_bn:
      x = batch_norm(train, self.bn_epsilon, name="bn")(x)
    return nn.relu(x)


def dropout(rate: float, train: bool) -> nn.Dropout:
  """nn.Dropout that is active only in training (it then needs the `dropout` rng)."""
  return nn.Dropout(rate, deterministic=not train)
