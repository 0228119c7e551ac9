"""The TensorFlow "Basic classification" tutorial's MLP (Dense 128) on Fashion-MNIST.

The tutorial trains 10 epochs with Adam at Keras' defaults (batch 32) and reports about 88% test
accuracy. Adam comes with a later issue; until then SGD with momentum 0.9 and a cosine schedule, which
reaches the same range. Native 28x28 input.
"""

from jaxcnn.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "fashion_mnist"
  config.model = "mlp"
  config.num_epochs = 10
  config.batch_size = 32
  config.learning_rate = 0.02
  config.weight_decay = 0.0
  return config
