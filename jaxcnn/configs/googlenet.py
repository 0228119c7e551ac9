"""GoogLeNet (Szegedy et al. 2014) on ImageNet: the paper's `googlenet` (LRN, both auxiliary classifiers at
loss weight 0.3, Section 5) and torchvision's BatchNorm layout `googlenet_bn`, with the same recipe.

Paper recipe (Section 6): asynchronous SGD, momentum 0.9, learning rate decreased by 4% every 8 epochs,
Polyak averaging for the final model (`ema_decay`; `--config.eval_weights=ema` evaluates the average);
random-sized crops of 8%-100% of the area with aspect 3/4-4/3, flips and photometric distortions. It
gives no batch size, base rate or length; those come from Caffe's bvlc_googlenet reproduction: batch 32,
learning rate 0.01, weight decay 2e-4, 60 epochs. Small images (`--config.dataset=fashion_mnist`): the
model's small-input stem (conv1 stride 1, first max-pool skipped, chosen automatically below 64 pixels)
keeps 28-14-7-4 maps through the Inception stages instead of upsampling 28 pixels to 224 (~50x the compute).
"""

from jaxcnn.configs import default

VARIANTS = ("googlenet", "googlenet_bn")


def get_config(name: str = "googlenet"):
  config = default.get_config()
  config.update(
    model=name,
    aux_loss_weight=0.3,
    num_epochs=60,
    batch_size=32,
    lr_reference_batch_size=32,
    learning_rate=0.01,
    momentum=0.9,
    weight_decay=2e-4,
  )
  # Section 6: "decreasing the learning rate by 4% every 8 epochs", and Polyak averaging for the final model.
  config.update(schedule="exponential", lr_decay_factor=0.96, lr_decay_every_epochs=8.0, ema_decay=0.9999)
  default.on_imagenet(config, train_augment="googlenet", eval_augment="googlenet")
  return config
