"""The TensorFlow "Basic classification" tutorial's MLP (Dense 128) on Fashion-MNIST: 87.51% test top-1.

  python -m jaxcnn.main --config=mlp --workdir=workdirs/mlp
  python -m jaxcnn.main --workdir=workdirs/mlp --mode=eval

Hardware: a 2-core CPU VM, float32, shared with three other jobs (2026-11-23). Time: 68 s train + eval (an
upper bound: the machine was shared). Result: test top-1 87.51%; the tutorial reports about 88%.
Recipe: the tutorial's: 10 epochs of Adam at Keras' defaults (lr 0.001, eps 1e-7), batch 32, no weight
decay; native 28x28 input, 101,770 parameters. One of the tutorials' three-model comparison with
`fashion_mnist_simple_cnn_flax` (90.88%) and `lenet5` (90.82%).
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
