"""LeNet-5 (modern: ReLU, max-pool) on Fashion-MNIST, 40 epochs of the shared recipe: 91.24% test top-1.

  python -m jaxcnn.main --config=fashion_mnist_lenet5 --workdir=workdirs/fashion_mnist_lenet5
  python -m jaxcnn.main --workdir=workdirs/fashion_mnist_lenet5 --mode=eval

Hardware: one NVIDIA H100, JAX 0.11.2, bfloat16 compute, seven runs sharing the GPU (2026-11-23).
Time: 166 s train + eval (shared GPU). Result: test top-1 91.24%, validation 91.64%.
On a 2-core CPU VM in float32 (`--config.compute_dtype=float32`, 2026-11-28): test top-1 90.98% / top-5
99.91% (validation 91.94%), 419 s train + eval. Flips only (`--config.train_augment=flip_lr
--config.num_epochs=30`, H100): 91.03% (validation 91.06%), 144 s.
Recipe: the `lenet5` config's network (61,706 parameters) with the optimizer it was measured with (SGD
momentum 0.9, weight decay 5e-4, lr 0.05, no warm-up, no label smoothing, batch 128; the default job's
recipe has moved on since) and `fashion_mnist.small_image_recipe`, 40 epochs. Reference: the Fashion-MNIST
benchmark table (zalandoresearch/fashion-mnist README) has no LeNet-5 row; LeCun et al. 1998 report 0.95% test
error on MNIST.
"""

from jaxcnn.configs import fashion_mnist, lenet5


def get_config():
  return fashion_mnist.small_image_recipe(
    lenet5.get_config(),
    num_epochs=40,
    learning_rate=0.05,
    nesterov=False,
    warmup_epochs=0.0,
    label_smoothing=0.0,
  )
