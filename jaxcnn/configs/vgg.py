"""VGG (Simonyan & Zisserman 2015) on ImageNet: configurations A (`vgg11`), A-LRN (`vgg11_lrn`), B
(`vgg13`), C (`vgg16_c`), D (`vgg16`) and E (`vgg19`) of Table 1, and the BatchNorm twins (`vgg11_bn`,
`vgg13_bn`, `vgg16_bn`, `vgg19_bn`, torchvision's layout) trained with the same recipe.

Paper recipe (Section 3.1): batch 256, momentum 0.9, weight decay 5e-4, dropout 0.5 on the first two FC
layers (model default), learning rate 0.01 divided by 10 when the validation accuracy stopped improving
(three times; 74 epochs; `schedule="plateau"`); scale jittering S in [256, 512], random 224 crops, flips
and AlexNet's RGB colour shift. The paper trained A from N(0, 0.01) weights and initialised the deeper
nets from A; training from scratch, every variant uses the Glorot initialisation that Section 3.1's
footnote says works without pre-training (`model_options.initializer`). Validation on centre crops;
`--config.eval_augment=vgg` gives Section 4's multi-scale 150-view evaluation (Q in {256, 384, 512}).
Small images (`--config.dataset=fashion_mnist`): no resize; VGG's ceil-mode pooling takes 28 pixels down
to 1x1 and fc6 becomes a 1x1 conv, so the conv stack and classifier are the paper's apart from fc6's
window; resizing to 224 would cost ~64x the compute.
"""

from jaxcnn.configs import default

VARIANTS = ("vgg11", "vgg11_bn", "vgg11_lrn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg16_c", "vgg19", "vgg19_bn")


def get_config(name: str = "vgg16"):
  config = default.get_config()
  config.update(
    model=name,
    model_options={"initializer": "glorot"},
    num_epochs=74,
    batch_size=256,
    lr_reference_batch_size=256,
    learning_rate=0.01,
    momentum=0.9,
    weight_decay=5e-4,
  )
  # Section 3.1: lr 1e-2, divided by 10 when the validation accuracy stopped improving (three times).
  default.divide_on_plateau(config, patience=2, max_reductions=3)
  # Section 3.1: scale jittering S in [256, 512], 224 crops, flips, RGB shift; centre-crop validation.
  default.on_imagenet(config, train_augment="vgg", eval_augment="center")
  return config
