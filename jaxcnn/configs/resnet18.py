"""ResNet-18 (He et al. 2015, Section 3.4) on ImageNet, shortcut option B.

Paper recipe: SGD, batch 256, momentum 0.9, weight decay 1e-4, no dropout, learning rate 0.1 divided by
10 when the error plateaus, up to 60e4 iterations (~120 epochs). Reduce-on-plateau comes with a later
issue: this uses the fixed schedule the authors' fb.resnet.torch and torchvision use for ResNets, 90
epochs with divisions at 30 and 60. Small images (`--config.dataset=fashion_mnist`): the small-input
stem (3x3/1 conv, no max-pool; automatic below 64 pixels), the usual CIFAR adaptation, instead of
resizing 28 pixels to 224 (~64x the compute).
"""

from jaxcnn.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "imagenet2012"
  config.model = "resnet18"
  config.num_epochs = 90
  config.batch_size = 256
  config.learning_rate = 0.1
  config.momentum = 0.9
  config.weight_decay = 1e-4
  config.schedule = "step"
  config.lr_boundaries_epochs = (30, 60)
  config.lr_decay_factor = 0.1
  return config
