"""The papers' recipes on every source: in effect, stated, fitted to small images; the user's chains as given."""

import json
import pathlib

import numpy as np
import pytest
from conftest import config_of
from data_fixtures import gradient, write_cifar_python, write_idx, write_image_folder, write_tfds

from jaxcnn import data
from jaxcnn.data import augment, pipeline, tf_ops

# JPEG and PNG in turn, without stray files.
_JPEG_AND_PNG = [(".jpg", "RGB", "JPEG"), (".png", "RGB", "PNG")]
_CIFAR_NAMES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _write_folder(root, sizes, classes=("cat", "dog"), splits=("train", "test")):
  """Gradient images (`gradient`) of `sizes` in every class of every split."""
  return write_image_folder(
    root, classes, splits, sizes=sizes, pixels=gradient, files=_JPEG_AND_PNG, quality=95, strays=()
  )


def _write_cifar(root, image=None):
  return write_cifar_python(root, image=gradient(32, 32) if image is None else image, class_names=_CIFAR_NAMES).parent


def _write_idx(root, n=48):
  return write_idx(root, np.tile(gradient(28, 28)[..., 0], (n, 1, 1)), np.arange(n) % 10)


def _tfds_gradients(directory):
  examples = {
    split: [(gradient(40 + i % 7, 50 + i % 5), i % 2) for i in range(n)] for split, n in (("train", 32), ("test", 8))
  }
  write_tfds(directory, "JaxcnnTinyGradients", (None, None, 3), ("cat", "dog"), examples, encoding_format="png")
  (directory / "stats.json").write_text(json.dumps({"mean": [0.5] * 3, "std": [0.3] * 3}))
  return directory


def _config(name, dataset, data_dir, **overrides):
  base = dict(dataset=dataset, data_dir=str(data_dir), batch_size=16, eval_batch_size=8)
  return config_of(base, overrides, name=name)


def _source(kind, tmp_path):
  """(config, expected training chain, expected classes) of each source, with AlexNet's recipe."""
  if kind == "folder":
    root = _write_folder(tmp_path / "pets", [(40, 60), (70, 45), (50, 50), (64, 90)] * 4)
    return (
      _config("alexnet", "image_folder", root, image_size=32),
      "resize_short(37)|center_crop(37)|random_crop(32)|flip_lr|pca_lighting(0.1, 'imagenet')",
      ("cat", "dog"),
    )
  if kind == "cifar_upscaled":
    return (
      _config("alexnet", "cifar10", _write_cifar(tmp_path), image_size=64),
      "resize_short(73)|center_crop(73)|random_crop(64)|flip_lr|pca_lighting(0.1, 'dataset')",
      _CIFAR_NAMES,
    )
  if kind == "idx":
    return (
      _config("alexnet", "fashion_mnist", _write_idx(tmp_path / "fmnist")),
      "pad(4)|random_crop(28, 28)|flip_lr",
      ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    )
  directory = _tfds_gradients(tmp_path / "tfds")
  config = _config(
    "alexnet", "jaxcnn_tiny_gradients", directory, image_size=32, stats_file=str(directory / "stats.json")
  )
  return (
    config,
    "resize_short(37)|center_crop(37)|random_crop(32)|flip_lr|pca_lighting(0.1, 'imagenet')",
    ("cat", "dog"),
  )


def _read_geometry(images, pipe):
  """Per image: mirrored?, and proxies of the crop's horizontal and vertical offsets (lighting cancels out)."""
  pixels = (images * pipe.std + pipe.mean) * 255
  first = pixels[..., 0]
  flipped = first[:, :, -1].mean(axis=1) < first[:, :, 0].mean(axis=1)
  left_slope = np.where(flipped[:, None], first[:, :, -2] - first[:, :, -1], first[:, :, 1] - first[:, :, 0])
  left_slope = left_slope.mean(axis=1)
  offsets = [np.round(left_slope, 1)]
  if pixels.shape[-1] == 3:
    offsets.append(np.round((pixels[:, 1, :, 1] - pixels[:, 0, :, 1]).mean(axis=1), 1))
  return flipped, offsets


@pytest.mark.parametrize("kind", ["folder", "cifar_upscaled", "idx", "tfds"])
def test_the_papers_recipe_applies_to_every_source_and_reaches_the_batches(kind, tmp_path):
  config, train_chain, classes = _source(kind, tmp_path)
  dataset = data.load(config)
  assert dataset.class_names == classes
  pipe = data.InputPipeline(config, dataset)
  assert pipe.train_chain.spec == train_chain
  described = "\n".join(pipe.describe())
  assert f"train augmentation: {train_chain} (preset 'alexnet')" in described
  images = np.concatenate([b["image"] for b in pipe.train_batches(0)])
  flipped, offsets = _read_geometry(images, pipe)
  assert 0 < flipped.sum() < len(flipped)  # mirrored and not
  for offset in offsets:
    assert len(set(offset)) >= 3, offset  # crops at several offsets
  views = next(iter(pipe.eval_batches("test")))["image"]
  if kind == "idx":  # 28x28: the small-image form, evaluated on the whole image
    assert "small-image form" in described and "without" not in train_chain
    source = dataset.split("test").images[: len(views)] / 255.0
    np.testing.assert_allclose(views * pipe.std + pipe.mean, source, atol=1e-5)
  else:  # AlexNet's ten views: corners and centre, each then mirrored
    assert views.shape[1:] == (10, config.image_size, config.image_size, 3)
    np.testing.assert_allclose(views[:, 1::2], views[:, 0::2, :, ::-1], atol=1e-4)


def test_lighting_shifts_colour_along_the_datasets_eigenvectors_when_it_has_statistics(tmp_path):
  # Constant-colour images: crops and flips leave the pixels alone, so the output minus the source is the shift.
  _write_cifar(tmp_path, image=np.full((32, 32, 3), 100, np.uint8))
  eigval, eigvec = np.array([0.3, 0.05, 0.01]), np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
  stats = {"mean": [0.4] * 3, "std": [0.2] * 3, "pca_eigval": eigval.tolist(), "pca_eigvec": eigvec.tolist()}
  (tmp_path / "jaxcnn_stats.json").write_text(json.dumps(stats))
  config = _config(
    "alexnet", "cifar10", tmp_path, image_size=64, batch_size=32, stats_file=str(tmp_path / "jaxcnn_stats.json")
  )
  pipe = data.InputPipeline(config, data.load(config))
  assert "the dataset's own eigenvalues and eigenvectors (from its statistics file)" in "\n".join(pipe.describe())
  images = next(iter(pipe.train_batches(0)))["image"]
  shift = (images * pipe.std + pipe.mean).mean(axis=(1, 2)) - 100 / 255
  alpha = np.linalg.solve(eigvec * eigval, shift.T).T  # shift = eigvec @ (alpha * eigval)
  np.testing.assert_allclose(images.std(axis=(1, 2)), 0, atol=1e-3)  # one shift per image
  assert (0.04 < alpha.std(axis=0)).all() and (alpha.std(axis=0) < 0.2).all(), alpha.std(axis=0)


def test_folder_without_statistics_file_uses_imagenets_eigenvectors_and_says_so(tmp_path):
  root = _write_folder(tmp_path, [(40, 60), (50, 50)] * 4, splits=("train",))
  config = _config("resnet18", "image_folder", root, image_size=32)
  pipe = data.InputPipeline(config, data.load(config))
  assert any("ImageNet's eigenvalues" in line for line in pipe.describe())
  assert [op.source for op in pipe.train_chain.ops if isinstance(op, augment.PcaLighting)] == ["imagenet"]


@pytest.mark.parametrize("kind", ["idx", "folder"])
def test_a_chain_the_user_writes_reaches_the_batches_on_any_dataset(kind, tmp_path):
  if kind == "idx":
    config = _config("lenet5", "fashion_mnist", _write_idx(tmp_path), train_augment="flip_lr(1.0)", pipeline="jax")
  else:
    root = _write_folder(tmp_path, [(32, 32)] * 8, splits=("train",))
    config = _config("lenet5", "image_folder", root, train_augment="flip_lr(1.0)", image_size=32, validation_size=0)
  dataset = data.load(config)
  pipe = data.InputPipeline(config, dataset)
  assert pipe.train_chain.spec == "flip_lr(1.0)"
  batch = next(iter(pipe.train_batches(0)))
  flipped, _ = _read_geometry(batch["image"], pipe)
  assert flipped.all()


def test_a_chain_that_cannot_apply_is_an_error_saying_what_to_set(tmp_path):
  config = _config(
    "lenet5", "fashion_mnist", _write_idx(tmp_path), train_augment="center_crop(32)", eval_augment="center_crop(32)"
  )
  with pytest.raises(
    ValueError,
    match=r"train split.*center_crop\(32, 32\) does not fit an image of 28x28.*"
    "--config.image_size",
  ):
    data.InputPipeline(config, data.load(config))
  config = _config("lenet5", "fashion_mnist", tmp_path, train_augment="pca_lighting(0.1)")
  with pytest.raises(ValueError, match="needs RGB images; these have 1 channel"):
    data.InputPipeline(config, data.load(config))


def test_validation_split_defaults_to_the_datasets_own_else_a_tenth_of_train(tmp_path):
  root = _write_folder(tmp_path / "a", [(40, 40)] * 24, splits=("train",))  # 48 images
  config = _config("simple_cnn", "image_folder", root)  # a config that leaves the default
  assert config.validation_size == "auto"
  assert {k: len(v) for k, v in data.load(config).splits.items()} == {"train": 43, "validation": 5}
  own = _write_folder(tmp_path / "b", [(40, 40)] * 3, splits=("train", "val"))
  assert {k: len(v) for k, v in data.load(_config("lenet5", "image_folder", own)).splits.items()} == {
    "train": 6,
    "validation": 6,
  }
  for bad, error in (
    (48, r"validation_size must be in \[0, 48\) for the 48 training images, got 48"),
    ("most", "validation_size must be 'auto' or a number of images >= 0, got 'most'"),
  ):
    with pytest.raises(ValueError, match=error):
      data.load(_config("lenet5", "image_folder", root, validation_size=bad))


def test_a_folder_without_train_split_or_with_an_empty_class_is_named(tmp_path):
  _write_folder(tmp_path / "a", [(40, 40)], splits=("test",))
  with pytest.raises(FileNotFoundError, match="has split folders \\['test'\\] but no train/"):
    data.load(_config("lenet5", "image_folder", tmp_path / "a"))
  root = _write_folder(tmp_path / "b", [(40, 40)], splits=("train", "test"))
  (root / "test" / "cat" / "0.jpg").unlink()
  with pytest.raises(ValueError, match="test/cat: empty class folder"):
    data.load(_config("lenet5", "image_folder", root))


def test_resuming_mid_epoch_decodes_no_image_of_the_earlier_batches(tmp_path, monkeypatch):
  root = write_image_folder(tmp_path, splits=("train",), per_class=12, size=(40, 48))
  config = _config(
    "lenet5",
    "image_folder",
    root,
    train_augment="random_crop(32)|flip_lr",
    eval_augment="center_crop(32)",
    validation_size=0,
    batch_size=8,
    data_cache="",  # tf.data's decoding is what is counted here (tests/test_data_cache.py counts the cache's)
  )
  dataset = data.load(config)
  train = dataset.split("train")
  # Every file through the Python decoder, which counts what it decodes.
  dataset.splits["train"] = type(train)(train.paths, train.labels, train.sizes, np.ones(len(train), bool))
  contents = {pathlib.Path(p).read_bytes(): p for p in train.paths}
  decoded, decode = [], tf_ops._pil_decode
  monkeypatch.setattr(tf_ops, "_pil_decode", lambda raw: decoded.append(contents[raw]) or decode(raw))
  pipe = data.InputPipeline(config, dataset)
  whole = list(pipe.train_batches(1))
  decoded.clear()
  resumed = list(pipe.train_batches(1, start_batch=2))
  order = pipeline.train_order(len(train), 8, config.seed, 1).reshape(-1, 8)
  assert sorted(decoded) == sorted(train.paths[order[2:].reshape(-1)])
  assert len(resumed) == 1 and len(whole) == 3
  for key in ("image", "label"):
    np.testing.assert_array_equal(resumed[0][key], whole[2][key])
