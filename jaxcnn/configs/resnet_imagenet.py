"""ResNet-18/34/50/101/152 (He et al. 2015, Table 1) on ImageNet, shortcut option B.

Paper recipe (Section 3.4): SGD, batch 256, momentum 0.9, weight decay 1e-4, no dropout, learning rate
0.1 divided by 10 when the error plateaus (`schedule="plateau"`), up to 60e4 iterations (~120 epochs; 90
here, as fb.resnet.torch and torchvision train them); scale augmentation (short side in [256, 480]),
random 224 crops, flips and AlexNet's colour augmentation; 10-crop testing. `resnet50` and deeper are the
paper form (stride in the first 1x1 of a downsampling bottleneck); `--config.model_options.stride_in_3x3=True`
gives the torchvision/NVIDIA "v1.5" network (ResNet-50: 4.09 G instead of 3.86 G multiply-adds). Paper
result: ResNet-50 22.85% / 6.71% top-1 / top-5 error on ILSVRC-2012 validation, 10-crop (Table 3).
Small images (`--config.dataset=fashion_mnist`): the small-input stem (3x3/1 conv, no max-pool; automatic
below 64 pixels), the usual CIFAR adaptation, instead of resizing 28 pixels to 224 (~64x the compute).
"""

from jaxcnn.configs import default

VARIANTS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def get_config(name: str = "resnet18"):
  config = default.get_config()
  config.update(
    model=name,
    num_epochs=90,
    batch_size=256,
    lr_reference_batch_size=256,
    learning_rate=0.1,
    momentum=0.9,
    weight_decay=1e-4,
  )
  # Section 3.4: lr 0.1 "divided by 10 when the error plateaus"; scale augmentation, 10-crop testing.
  default.divide_on_plateau(config, patience=3)
  default.on_imagenet(config, train_augment="resnet", eval_augment="resnet")
  return config
