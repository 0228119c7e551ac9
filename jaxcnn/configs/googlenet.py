"""GoogLeNet (Szegedy et al. 2014, Section 6) on ImageNet, with both auxiliary classifiers at loss weight 0.3.

Paper recipe: asynchronous SGD, momentum 0.9, learning rate decreased by 4% every 8 epochs, Polyak
averaging for the final model; it gives no batch size, base rate or length. Those come from Caffe's
bvlc_googlenet reproduction: batch 32, learning rate 0.01, weight decay 2e-4, 60 epochs. Polyak averaging
is not implemented yet. Small images (`--config.dataset=fashion_mnist`): the model's small-input stem
(conv1 stride 1, first max-pool skipped, chosen automatically below 64 pixels) keeps 28-14-7-4 maps
through the Inception stages instead of upsampling 28 pixels to 224 (~50x the compute).
"""

from jaxcnn.configs import default


def get_config():
  config = default.get_config()
  config.model = "googlenet"
  config.aux_loss_weight = 0.3
  config.num_epochs = 60
  config.batch_size = 32
  config.learning_rate = 0.01
  config.momentum = 0.9
  config.weight_decay = 2e-4
  # Section 6: "decreasing the learning rate by 4% every 8 epochs", and Polyak averaging for the final model.
  config.schedule = "exponential"
  config.lr_decay_factor = 0.96
  config.lr_decay_every_epochs = 8
  config.ema_decay = 0.9999
  default.on_imagenet(config, train_augment="googlenet", eval_augment="googlenet")
  return config
