"""VGG-16, configuration D (Simonyan & Zisserman 2015, Section 3.1) on ImageNet.

Paper recipe: batch 256, momentum 0.9, weight decay 5e-4, dropout 0.5 on the first two FC layers (model
default), learning rate 0.01 divided by 10 when validation accuracy stopped improving (three times; 74
epochs; `schedule="plateau"`). The paper initialised D from the trained net A; training from scratch, we use the Glorot initialisation its
Section 3.1 footnote says works without pre-training (`model_options.initializer`).
Small images (`--config.dataset=fashion_mnist`): no resize; VGG's ceil-mode pooling takes 28 pixels down
to 1x1 and fc6 becomes a 1x1 conv, so the conv stack and classifier are the paper's apart from fc6's
window; resizing to 224 would cost ~64x the compute.
"""

from jaxcnn.configs import default


def get_config():
  config = default.get_config()
  config.model = "vgg16"
  config.model_options.initializer = "glorot"
  config.num_epochs = 74
  config.batch_size = 256
  config.learning_rate = 0.01
  config.momentum = 0.9
  config.weight_decay = 5e-4
  # Section 3.1: lr 1e-2, divided by 10 when the validation accuracy stopped improving (three times).
  default.divide_on_plateau(config, patience=2, max_reductions=3)
  # Section 3.1: scale jittering S in [256, 512], 224 crops, flips, RGB shift. Validation on centre crops;
  # --config.eval_augment=vgg gives Section 4's multi-scale 150-view evaluation.
  default.on_imagenet(config, train_augment="vgg", eval_augment="center")
  return config
