"""AlexNet (Krizhevsky et al. 2012, Section 5) on ImageNet: the single-tower `alexnet`.

Paper recipe: SGD, batch 128, momentum 0.9, weight decay 5e-4, learning rate 0.01 divided by 10 when the
validation error stopped improving (three times in ~90 epochs); dropout 0.5 on fc6/fc7 (model default);
N(0, 0.01) weights and bias 1 on conv2/4/5, fc6/7 (model default). Reduce-on-plateau comes with a later
issue: the three divisions are placed at epochs 30, 60 and 80 here.
Small images (`--config.dataset=fashion_mnist`): the model switches to its small-input stem (conv1 5x5/1
instead of 11x11/4, chosen automatically below 64 pixels): resizing 28 pixels to 227 would cost ~65x the
compute without adding information, and conv1 11x11/4 would leave nothing after the third pool.
"""

from jaxcnn.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "imagenet2012"
  config.model = "alexnet"
  config.num_epochs = 90
  config.batch_size = 128
  config.learning_rate = 0.01
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.schedule = "step"
  config.lr_boundaries_epochs = (30, 60, 80)
  config.lr_decay_factor = 0.1
  return config
