"""GoogLeNet as in the paper (LRN, auxiliary classifiers) on Fashion-MNIST, 40 epochs: not finished.

  python -m jaxcnn.main --config=fashion_mnist_googlenet --workdir=workdirs/fashion_mnist_googlenet
  python -m jaxcnn.main --workdir=workdirs/fashion_mnist_googlenet --mode=eval

Hardware: one NVIDIA H100 80GB HBM3, JAX 0.11.2, bfloat16 compute, TF-free input pipeline, five runs sharing
the GPU (2026-11-23). Time: compilation took ~3 minutes (first epoch
179 s), then 7-8 s per epoch on the shared GPU; a 500 s limit on the GPU session stopped the run at epoch
~32 of 40, before the test evaluation. Result: validation top-1 94.04% at epoch 30 (learning rate 0.0059
of 0.04); no test figure. The Fashion-MNIST benchmark table's GoogLeNet has 93.7%
(zalandoresearch/fashion-mnist README). Expected on a GPU of its own: ~3 minutes of compilation and
40 x ~3 s.
Recipe: the `googlenet` config (auxiliary classifiers at loss weight 0.3, weight decay 2e-4, Polyak
averaging at 0.9999 kept beside the raw weights) with `fashion_mnist.small_image_recipe`, lr 0.04 (Caffe's
0.01 at batch 32 scaled linearly to 128), 40 epochs. Reference: Szegedy et al. 2014, Table 3: 10.07%
top-5 error with 1 model and 1 crop, 6.67% with 7 models and 144 crops.
"""

from jaxcnn.configs import fashion_mnist, googlenet


def get_config():
  return fashion_mnist.small_image_recipe(googlenet.get_config("googlenet"), num_epochs=40, learning_rate=0.04)
