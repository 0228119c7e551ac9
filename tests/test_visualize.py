"""The pictures a run writes: the training batch, the eval views, the most confident mistakes, the first-layer
filters (jaxcnn/visualize.py), checked on the arrays they are drawn from and on what matplotlib is given."""

import json

import jax
import ml_collections
import numpy as np
import pytest
from data_fixtures import write_image_folder

from jaxcnn import configs, data, models, reporting, train, visualize
from jaxcnn.data import sources


def tile(grid: visualize.Grid, mosaic: np.ndarray, i: int) -> np.ndarray:
  top, left = grid.origin(i)
  height, width = grid.tiles.shape[1:3]
  return mosaic[top : top + height, left : left + width]


def test_the_batch_grid_shows_the_batch_unnormalised_in_order_with_class_names(tiny_config):
  dataset = data.load(tiny_config)
  pipeline = data.InputPipeline(tiny_config, dataset)
  batch = next(iter(pipeline.train_batches(0)))
  grid = visualize.batch_grid(batch["image"], batch["label"], dataset.class_names, pipeline.mean, pipeline.std)
  # The training split's uint8 pixels of the same examples, in the order train_batches drew them.
  order = data.pipeline.train_order(len(dataset.split("train")), tiny_config.batch_size, tiny_config.seed, 0)
  pixels = dataset.split("train").images[order[: tiny_config.batch_size]] / 255.0
  assert len(grid.tiles) == tiny_config.batch_size
  mosaic = grid.mosaic()
  for i in range(len(grid.tiles)):
    np.testing.assert_allclose(tile(grid, mosaic, i), pixels[i], atol=1e-5)  # in batch order, within rounding
  names = [dataset.class_names[int(label)] for label in batch["label"]]
  assert grid.captions == names and set(names) <= set(dataset.class_names)
  fig = grid.figure()
  (ax,) = fig.axes
  assert [text.get_text() for text in ax.texts] == names  # what matplotlib draws above the tiles
  np.testing.assert_allclose(ax.images[0].get_array(), mosaic[..., 0])
  reporting.pyplot().close(fig)


def test_a_training_run_writes_the_input_batch_and_eval_views(tiny_config, tmp_path):
  tiny_config.num_epochs = 1
  train.train_and_evaluate(tiny_config, tmp_path)
  for name in ("input_batch.png", "eval_views.png", "training_curves.png"):
    assert (tmp_path / name).stat().st_size > 0, name
  run_summary = json.loads((tmp_path / "run_summary.json").read_text())
  model = models.create("lenet5", num_classes=10)
  variables = model.init(jax.random.PRNGKey(0), np.zeros((1, 28, 28, 1)), train=False)
  assert run_summary["params"] == sum(x.size for x in jax.tree.leaves(variables["params"])) == 61_706
  assert run_summary["macs"] > 0 and run_summary["model"] == "lenet5"


@pytest.mark.parametrize("preset,views", [("center", 1), ("ten_crop", 10)])
def test_the_eval_views_image_has_a_tile_per_view_of_the_preset(tmp_path, preset, views):
  write_image_folder(tmp_path / "pets", per_class=2, size_range=(70, 90))
  config = configs.get("simple_cnn")
  config.update(dataset="image_folder", data_dir=str(tmp_path / "pets"), image_size=64, validation_size=0)
  config.update(pipeline="jax", eval_augment=preset)
  dataset = data.load(config)
  pipeline = data.InputPipeline(config, dataset)
  made = visualize.eval_views(pipeline, dataset.split("train"), [0])[0]
  grid = visualize.views_grid(made, pipeline.mean, pipeline.std, "train image 1", pipeline.eval_chain.spec)
  assert len(grid.tiles) == len(grid.captions) == views
  fig = grid.figure()
  assert len(fig.axes[0].texts) == views
  reporting.pyplot().close(fig)


def test_the_mistakes_grid_holds_only_wrong_predictions_most_confident_first():
  rng = np.random.default_rng(0)
  mistakes = visualize.ConfidentMistakes(n=5)
  steps = [  # seven eval steps of 12 examples, the last with 4 of padding
    {
      "label": rng.integers(0, 3, 12).astype(np.int32),
      "predicted": rng.integers(0, 3, 12).astype(np.int32),
      "probability": rng.random(12).astype(np.float32),
      "mask": np.arange(12) < (8 if i == 6 else 12),
    }
    for i in range(7)
  ]
  for step in steps:
    mistakes.add(step)
  labels, predicted, probability = (
    np.concatenate([s[k] for s in steps]) for k in ("label", "predicted", "probability")
  )
  valid = np.arange(len(labels)) < len(labels) - 4
  wrong = np.flatnonzero(valid & (labels != predicted))
  expected = wrong[np.argsort(-probability[wrong], kind="stable")][:5]
  kept = mistakes.kept
  np.testing.assert_array_equal(kept["index"], expected)
  assert np.all(kept["label"] != kept["predicted"]) and np.all(np.diff(kept["probability"]) <= 0)
  images = rng.random((5, 8, 8, 3)).astype(np.float32)
  names = ("cat", "dog", "fox")
  grid = visualize.mistakes_grid(images, kept["label"], kept["predicted"], kept["probability"], names, 0.0, 1.0)
  assert grid.captions == [
    f"true {names[t]}\npred {names[p]} {q:.0%}"
    for t, p, q in zip(labels[expected], predicted[expected], probability[expected])
  ]
  assert len(grid.tiles) == 5


def test_the_padding_of_the_last_eval_batch_is_never_a_mistake():
  mistakes = visualize.ConfidentMistakes(n=4)
  mistakes.add({"label": np.zeros(4), "predicted": np.ones(4), "probability": np.ones(4), "mask": np.zeros(4, bool)})
  assert len(mistakes) == 0


@pytest.mark.parametrize("model_name,image_shape,kernels", [("lenet5", (28, 28, 1), 6), ("alexnet", (64, 64, 3), 96)])
def test_the_filter_grid_has_a_tile_per_first_layer_kernel(model_name, image_shape, kernels):
  model = models.create(model_name, num_classes=10)
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), np.zeros((1, *image_shape)), train=False))
  params = jax.tree.map(lambda s: np.random.default_rng(0).normal(size=s.shape), params["params"])
  name, kernel = visualize.first_conv_kernel(model, params, image_shape)
  assert kernel.shape[-1] == kernels and kernel.shape[2] == image_shape[2], (name, kernel.shape)
  grid = visualize.filter_grid(kernel, name)
  assert len(grid.tiles) == kernels and grid.tiles.shape[-1] == image_shape[2]  # grayscale for 1 channel
  assert np.allclose(grid.tiles.min(axis=(1, 2, 3)), 0) and np.allclose(grid.tiles.max(axis=(1, 2, 3)), 1)
  np.testing.assert_allclose(tile(grid, grid.mosaic(), 1), grid.tiles[1])


def test_a_model_that_starts_with_a_dense_layer_has_no_filters():
  model = models.create("mlp", num_classes=10)
  params = model.init(jax.random.PRNGKey(0), np.zeros((1, 28, 28, 1)), train=False)["params"]
  assert visualize.first_conv_kernel(model, params, (28, 28, 1)) is None


def test_eval_views_of_a_split_in_memory_are_the_eval_batches_views():
  images = np.random.default_rng(0).integers(0, 256, (6, 40, 40, 3), np.uint8)
  split = sources.Split(images, np.arange(6, dtype=np.int32) % 2)
  dataset = sources.Dataset("synthetic", {"train": split, "test": split}, ("a", "b"))
  config = ml_collections.ConfigDict(configs.get("simple_cnn").to_dict())
  config.update(dataset="synthetic", eval_augment="ten_crop", image_size=32)
  pipeline = data.InputPipeline(config, dataset, {"mean": [0.5] * 3, "std": [0.25] * 3, "origin": "computed"})
  every = next(iter(pipeline.eval_batches("test", 6)))["image"]
  np.testing.assert_allclose(visualize.eval_views(pipeline, split, [4, 1]), np.asarray(every)[[4, 1]], atol=1e-6)
