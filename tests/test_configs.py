"""Every named experiment config starts a real training run on a tiny Fashion-MNIST-format dataset.

Each config names its paper's dataset; the single override `dataset=fashion_mnist` (plus the tiny data
directory and a small batch) must be enough: models on 224-pixel inputs switch to their small-input
stems by themselves. One epoch of 3 steps over 8 devices, then validation.
"""

import math

import pytest

from jaxcnn import configs, train

# Configs whose models compile for long on CPU (tens of seconds each): the slow tier.
SLOW = {"alexnet", "alexnet_grouped", "googlenet", "resnet18", "resnet50", "vgg16"}


def test_each_config_names_a_registered_model():
  from jaxcnn import models

  assert {configs.get(name).model for name in configs.names()} <= set(models.names())


@pytest.mark.parametrize("name", [n if n not in SLOW else pytest.param(n, marks=pytest.mark.slow) for n in configs.names()])
def test_config_trains_one_epoch_on_fashion_mnist(name, tiny_data_dir, tmp_path):
  config = configs.get(name)
  config.dataset = "fashion_mnist"
  config.data_dir = str(tiny_data_dir)
  config.validation_size = 60
  config.batch_size = 80  # 240 training images: 3 steps of 10 images per device
  config.eval_batch_size = 64
  config.num_epochs = 1
  config.checkpoint_max_to_keep = 1
  record = train.train_and_evaluate(config, tmp_path)
  assert record["epoch"] == 1 and record["step"] == 3
  assert math.isfinite(record["train_loss"]) and math.isfinite(record["validation_loss"])
  assert record["validation_num_examples"] == 60
