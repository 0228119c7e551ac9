"""What people bring: a paper's config on their own data, each run as the README's "Your own data" commands
run it (the named config plus the overrides shown), on tiny files in the real formats."""

import json

import pytest
from conftest import write_idx_dataset
from data_fixtures import write_cifar_python, write_image_folder

from jaxcnn import configs, torchvision_weights, train


def _run(name, tmp_path, capsys, **overrides):
  config = configs.get(name)
  config.update(overrides)
  record = train.train_and_evaluate(config, tmp_path / "run")
  return record, capsys.readouterr().out


@pytest.mark.slow
def test_a_paper_config_on_a_cats_and_dogs_folder(tmp_path, capsys):
  # Kaggle's layout: train/ and test/ only, JPEG, PNG and BMP of mixed sizes and modes, stray text files;
  # neither validation_size nor image_size is set.
  root = write_image_folder(tmp_path / "pets", splits=("train",), per_class=24)
  write_image_folder(root, splits=("test",), per_class=2, seed=1)
  record, out = _run(
    "alexnet",
    tmp_path,
    capsys,
    dataset="image_folder",
    data_dir=str(root),
    batch_size=8,
    eval_batch_size=8,
    num_epochs=1,
  )
  assert record["epoch"] == 1 and record["validation_top1_error"] <= 1
  assert "data: image_folder from" in out and "train 43, test 4, validation 5 images; 2 classes" in out
  assert (
    "train augmentation: resize_short(256)|center_crop(256)|random_crop(224)|flip_lr|pca_lighting(0.1, "
    "'imagenet') (preset 'alexnet')" in out
  )
  assert "eval augmentation: resize_short(256)|ten_crop(224) (preset 'alexnet'); 10 views" in out


@pytest.mark.slow
@pytest.mark.parametrize(
  "name,image_size,train_chain",
  [
    ("alexnet", 64, "resize_short(73)|center_crop(73)|random_crop(64)|flip_lr|pca_lighting(0.1, 'dataset')"),
    ("vgg16", 48, "random_resize_short(55, 110)|random_crop(48)|flip_lr|pca_lighting(0.1, 'dataset')"),
  ],
)
def test_alexnet_and_vgg_on_cifar10_pickles_upscaled(name, image_size, train_chain, tmp_path, capsys):
  write_cifar_python(tmp_path / "cifar")
  record, out = _run(
    name,
    tmp_path,
    capsys,
    dataset="cifar10",
    data_dir=str(tmp_path / "cifar"),
    image_size=image_size,
    batch_size=8,
    eval_batch_size=8,
    num_epochs=1,
  )
  assert record["epoch"] == 1
  assert f"input: {image_size}x{image_size}x3 (source: 32x32x3)" in out and f"train augmentation: {train_chain}" in out


@pytest.mark.slow
def test_the_mlp_small_cnn_and_lenet5_compared_on_an_idx_set(tmp_path, capsys):
  data_dir = write_idx_dataset(tmp_path / "fmnist", num_train=200, num_test=40)
  results = {}
  for name in ("mlp", "simple_cnn", "lenet5"):
    record, out = _run(
      name,
      tmp_path / name,
      capsys,
      data_dir=str(data_dir),
      validation_size=20,  # the same split for all three (lenet5's default job trains on every image)
      batch_size=32,
      eval_batch_size=40,
      num_epochs=1,
    )
    results[name] = record
    assert "train 180, test 40, validation 20 images; 10 classes" in out
  assert all(0 <= r["validation_top1_accuracy"] <= 1 and r["epoch_seconds"] > 0 for r in results.values()), json.dumps(
    results, default=str
  )


@pytest.mark.slow
@pytest.mark.parametrize("freeze", [True, False])
def test_a_torchvision_resnet34_trained_with_a_new_head_on_cifar100_at_224(freeze, tmp_path, capsys):
  from test_torchvision import random_torchvision, save_state_dict

  pth = save_state_dict(random_torchvision("resnet34"), tmp_path / "resnet34.pth")  # 1000 classes, as ImageNet's
  imported = torchvision_weights.convert(torchvision_weights.load_state_dict(pth), "resnet34")
  torchvision_weights.write_checkpoint(imported, torchvision_weights.imagenet_config(), tmp_path / "resnet34_tv")
  write_cifar_python(tmp_path / "cifar", "cifar100", per_batch=9)
  record, out = _run(
    "resnet18",
    tmp_path,
    capsys,
    model="resnet34",
    dataset="cifar100",
    data_dir=str(tmp_path / "cifar"),
    image_size=224,
    init_from=str(tmp_path / "resnet34_tv"),
    freeze_backbone=freeze,
    batch_size=8,
    eval_batch_size=8,
    num_epochs=1,
  )
  assert record["step"] == 1 and "train 8, test 9, validation 1 images; 100 classes" in out
