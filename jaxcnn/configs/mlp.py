"""The TensorFlow "Basic classification" tutorial's MLP (Dense 128) on Fashion-MNIST.

The tutorial trains 10 epochs with Adam at Keras' defaults (batch 32) and reports about 88% test
accuracy; this config does the same. Native 28x28 input.
"""

from jaxcnn.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "fashion_mnist"
  config.model = "mlp"
  config.num_epochs = 10
  config.batch_size = 32
  config.optimizer = "adam"  # Keras' defaults: lr 1e-3, betas 0.9/0.999, eps 1e-7
  config.adam_eps = 1e-7
  config.learning_rate = 1e-3
  config.schedule = "constant"
  config.weight_decay = 0.0
  return config
