"""LeNet-5 (modern variant) on Fashion-MNIST: the project's default job.

Trains in well under three minutes on two CPU cores. The paper's recipe (stochastic diagonal
Levenberg-Marquardt, 20 passes) is the `lenet5_1998` experiment; this one uses SGD with momentum and a
cosine schedule, the way the tutorials train it.
"""

from jaxcnn.configs import default


def get_config():
  config = default.get_config()
  config.model = "lenet5"
  config.model_options.activation = "relu"
  config.model_options.pooling = "max"
  config.num_epochs = 12
  config.batch_size = 128
  config.learning_rate = 0.05
  config.weight_decay = 5e-4
  return config
