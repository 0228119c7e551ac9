"""AlexNet as published: the two GPU towers as grouped convolutions (`alexnet_grouped`), with the paper's
recipe of the `alexnet` config (same small-input behaviour on Fashion-MNIST)."""

from jaxcnn.configs import alexnet


def get_config():
  config = alexnet.get_config()
  config.model = "alexnet_grouped"
  return config
