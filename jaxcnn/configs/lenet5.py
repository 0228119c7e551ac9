"""LeNet-5 (modern variant: ReLU, max-pool) on Fashion-MNIST, the default job: 90.82% test top-1.

  python -m jaxcnn.main --config=lenet5 --workdir=workdirs/lenet5
  python -m jaxcnn.main --workdir=workdirs/lenet5 --mode=eval

Hardware: a 2-core CPU VM, float32, no other job running (2026-11-23). Time: 104 s train + eval.
Result: test top-1 90.82% / top-5 99.92% (validation 91.26%). On another 2-core VM after the CPU speed
work (2026-11-28): 90.73%, 93 s.
Recipe: the paper's layer sizes (28x28 images centred in its 32x32 field; 61,706 parameters), SGD with
momentum 0.9, coupled weight decay 5e-4, lr 0.05 with a cosine schedule, batch 128, 12 epochs, the
55,000/5,000/10,000 train/validation/test split: the way the tutorials train it. The paper's recipe
(stochastic diagonal Levenberg-Marquardt, 20 passes) is the `lenet5_1998` config; 40 epochs with
translations and flips is `fashion_mnist_lenet5` (91.24%).
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
