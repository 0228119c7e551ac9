"""ResNet-20 on CIFAR-10 (He et al. 2015, Section 4.2): 6n+2 with n=3, shortcut option A.

Paper recipe: batch 128, SGD momentum 0.9, weight decay 1e-4, learning rate 0.1 divided by 10 at 32k and
48k iterations, stop at 64k, on a 45k/5k train/validation split; at 45,000/128 steps per epoch that is
epochs 91 and 137 of 182. (ResNet-110 warmed up at 0.01 for ~400 iterations: `warmup_epochs=1`.) Input
native: 32x32 CIFAR images, or 28x28 Fashion-MNIST with `--config.dataset=fashion_mnist` (the CIFAR
network has no stem downsampling, so 28-14-7 maps work as they are).
"""

from jaxcnn.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "cifar10"
  config.model = "resnet20"
  config.validation_size = 5000
  config.num_epochs = 182
  config.batch_size = 128
  config.learning_rate = 0.1
  config.momentum = 0.9
  config.weight_decay = 1e-4
  # Section 4.2: /10 at 32k and 48k iterations, stop at 64k (about 182 epochs of 45k images at 128);
  # pad-4 random crops and flips, testing on the original image.
  config.schedule = "step"
  config.lr_boundaries_steps = (32000, 48000)
  config.lr_decay_factor = 0.1
  config.train_augment = "resnet_cifar"
  return config
