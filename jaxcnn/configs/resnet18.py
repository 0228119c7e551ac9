"""ResNet-18 (He et al. 2015, Section 3.4) on ImageNet, shortcut option B.

Paper recipe: SGD, batch 256, momentum 0.9, weight decay 1e-4, no dropout, learning rate 0.1 divided by
10 when the error plateaus (`schedule="plateau"`), up to 60e4 iterations (~120 epochs; 90 here, as
fb.resnet.torch and torchvision train them); scale augmentation and 10-crop testing on ImageNet. Small images (`--config.dataset=fashion_mnist`): the small-input
stem (3x3/1 conv, no max-pool; automatic below 64 pixels), the usual CIFAR adaptation, instead of
resizing 28 pixels to 224 (~64x the compute).
"""

from jaxcnn.configs import default


def get_config():
  config = default.get_config()
  config.model = "resnet18"
  config.num_epochs = 90
  config.batch_size = 256
  config.learning_rate = 0.1
  config.momentum = 0.9
  config.weight_decay = 1e-4
  # Section 3.4: lr 0.1 "divided by 10 when the error plateaus"; scale augmentation, 10-crop testing.
  default.divide_on_plateau(config, patience=3)
  default.on_imagenet(config, train_augment="resnet", eval_augment="resnet")
  return config
