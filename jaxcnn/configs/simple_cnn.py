"""The Flax MNIST example's two-conv CNN on MNIST, with that example's recipe: SGD, learning rate 0.1,
momentum 0.9, batch 128, 10 epochs, no weight decay, constant rate. Native 28x28 input; Fashion-MNIST with
`--config.dataset=fashion_mnist`.
"""

from jaxcnn.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "mnist"
  config.model = "simple_cnn"
  config.num_epochs = 10
  config.batch_size = 128
  config.learning_rate = 0.1
  config.weight_decay = 0.0
  config.schedule = "constant"
  return config
