"""The small-image recipe every `fashion_mnist_*` experiment config shares (a helper, not a config).

The papers' ImageNet chains take 224-227 pixel crops of images of 256 pixels and more; on 28x28 images
every network trains with one recipe instead: the 55,000/5,000 train/validation split (the validation
images carved from the training split with a fixed seed), a cosine learning rate, 2-pixel random
translations (pad 2, random 28x28 crop) and mirror images in training, the plain image in evaluation,
batch 128, bfloat16 compute (parameters and optimizer state stay float32), and `--mode=eval` on the test
split. Each experiment keeps the rest of its paper's config (optimizer, weight decay, dropout, auxiliary
heads) and names what it changes.
"""

import ml_collections


def small_image_recipe(config: ml_collections.ConfigDict, **fields) -> ml_collections.ConfigDict:
  """`config` (a paper's) on Fashion-MNIST with the shared recipe, then the experiment's own `fields`."""
  config.update(
    dataset="fashion_mnist",
    validation_size=5000,
    schedule="cosine",
    train_augment="pad(2)|random_crop(28)|flip_lr",
    eval_augment="",
    eval_split="test",
    batch_size=128,
    lr_reference_batch_size=128,  # each experiment's learning rate was measured at this batch
    compute_dtype="bfloat16",
  )
  config.update(fields)
  return config
