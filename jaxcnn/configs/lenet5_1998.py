"""LeNet-5 as published (LeCun et al. 1998): the `lenet5_1998` model on MNIST.

Paper recipe (Section III.B): 20 passes of stochastic diagonal Levenberg-Marquardt, one example at a
time, with the global rate 5e-4 for 2 passes, 2e-4 for 3, 1e-4 for 3, 5e-5 for 4, then 1e-5; no weight
decay. jaxcnn has no SDLM optimizer (a known gap); this uses SGD with momentum on mini-batches, halving the
rate at the paper's pass boundaries (2, 5, 8, 12): the same shape of schedule at rates plain SGD needs.
Input: 28x28 digits centred in the paper's 32x32 field by the model itself (Section III.A), so any
28-pixel dataset runs as is: `--config.dataset=fashion_mnist`.
"""

from jaxcnn.configs import default


def get_config():
  config = default.get_config()
  config.dataset = "mnist"
  config.model = "lenet5_1998"
  config.num_epochs = 20
  config.batch_size = 32
  config.learning_rate = 0.02
  config.weight_decay = 0.0
  config.schedule = "step"
  config.lr_boundaries_epochs = (2, 5, 8, 12)
  config.lr_decay_factor = 0.5
  return config
