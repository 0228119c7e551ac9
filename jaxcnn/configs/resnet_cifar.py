"""ResNet-20/32/44/56/110/1202 on CIFAR-10 (He et al. 2015, Section 4.2): 6n+2 layers, shortcut option A.

Paper recipe (Section 4.2): batch 128, SGD momentum 0.9, weight decay 1e-4, learning rate 0.1 divided by
10 at 32k and 48k iterations, stop at 64k, on a 45k/5k train/validation split; at 45,000/128 steps per
epoch that is epochs 91 and 137 of 182. 4 pixels of zero padding, random 32x32 crops and flips; testing
on the original image. ResNet-110 starts at 0.01 "until the training error is below 80% (about 400
iterations)" and then goes back to 0.1 (`warmup_mode="constant"`, 400 steps); the paper says no such
thing for ResNet-1202, so it starts at 0.1. Input native: 32x32 CIFAR images, or 28x28 Fashion-MNIST with
`--config.dataset=fashion_mnist` (the CIFAR network has no stem downsampling, so 28-14-7 maps work as
they are).
"""

from jaxcnn.configs import default

VARIANTS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202")


def get_config(name: str = "resnet20"):
  config = default.get_config()
  config.update(
    dataset="cifar10",
    model=name,
    validation_size=5000,
    num_epochs=182,
    batch_size=128,
    lr_reference_batch_size=128,
    learning_rate=0.1,
    momentum=0.9,
    weight_decay=1e-4,
  )
  # Section 4.2: /10 at 32k and 48k iterations, stop at 64k (about 182 epochs of 45k images at 128);
  # pad-4 random crops and flips, testing on the original image.
  config.update(schedule="step", lr_boundaries_steps=(32000, 48000), lr_decay_factor=0.1)
  if name == "resnet110":
    config.update(warmup_mode="constant", warmup_init_lr=0.01, warmup_steps=400)
  config.train_augment = "resnet_cifar"
  return config
