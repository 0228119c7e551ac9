"""GoogLeNet with BatchNorm (torchvision's layout) on Fashion-MNIST, 40 epochs: not finished.

  python -m jaxcnn.main --config=fashion_mnist_googlenet_bn --workdir=workdirs/fashion_mnist_googlenet_bn
  python -m jaxcnn.main --workdir=workdirs/fashion_mnist_googlenet_bn --mode=eval

Hardware: one NVIDIA H100 80GB HBM3, JAX 0.11.2, bfloat16 compute, TF-free input pipeline, five runs sharing
the GPU (2026-11-23). Time: first epoch 205 s (compilation), then 9-11 s
per epoch on the shared GPU; a 500 s limit on the GPU session stopped the run at epoch ~22 of 40, before
the test evaluation. Result: validation top-1 91.40% at epoch 15; no test figure.
Recipe: the `googlenet_bn` config (BatchNorm, no LRN, auxiliary classifiers at loss weight 0.3, weight
decay 2e-4, Polyak averaging at 0.9999) with `fashion_mnist.small_image_recipe`, lr 0.1, 40 epochs.
"""

from jaxcnn.configs import fashion_mnist, googlenet


def get_config():
  return fashion_mnist.small_image_recipe(googlenet.get_config("googlenet_bn"), num_epochs=40, learning_rate=0.1)
