"""AlexNet (Krizhevsky et al. 2012, Section 5) on ImageNet: the single-tower `alexnet`.

Paper recipe: SGD, batch 128, momentum 0.9, weight decay 5e-4, learning rate 0.01 divided by 10 when the
validation error stopped improving (three times in ~90 epochs); dropout 0.5 on fc6/fc7 (model default);
N(0, 0.01) weights and bias 1 on conv2/4/5, fc6/7 (model default); Section 4.1's augmentation (random
227 crops, flips, PCA lighting) and ten-crop testing, fitted to any dataset (jaxcnn/data/recipe.py).
Small images (`--config.dataset=fashion_mnist`): the model switches to its small-input stem (conv1 5x5/1
instead of 11x11/4, chosen automatically below 64 pixels): resizing 28 pixels to 227 would cost ~65x the
compute without adding information, and conv1 11x11/4 would leave nothing after the third pool.
"""

from jaxcnn.configs import default


def get_config():
  config = default.get_config()
  config.model = "alexnet"
  # Section 5's initialisation, named so that an override can replace it (Fashion-MNIST needs "he" and
  # hidden_bias 0: experiments/alexnet).
  config.model_options.initializer = "normal"
  config.model_options.hidden_bias = 1.0
  config.num_epochs = 90
  config.batch_size = 128
  config.learning_rate = 0.01
  config.momentum = 0.9
  config.weight_decay = 5e-4
  # Section 5: "divide the learning rate by 10 when the validation error rate stopped improving", three times.
  default.divide_on_plateau(config, patience=2, max_reductions=3)
  # Section 4.1: random 227 crops of the 256 centre, flips, PCA lighting; test on ten crops.
  default.on_imagenet(config, train_augment="alexnet", eval_augment="alexnet")
  return config
