import gzip

import jax
import numpy as np
import pytest

from jaxcnn import data, parallel
from jaxcnn.data import idx


def test_idx_round_trip(tmp_path):
  array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  idx.write(tmp_path / "a.gz", array)
  np.testing.assert_array_equal(idx.read(tmp_path / "a.gz"), array)


def test_idx_header_that_does_not_match_the_length_is_refused(tmp_path):
  path = tmp_path / "bad.gz"
  idx.write(path, np.zeros((4, 28, 28), np.uint8))
  with gzip.open(path, "rb") as f:
    raw = f.read()
  with gzip.open(path, "wb") as f:
    f.write(raw[:-10])
  with pytest.raises(ValueError, match="bad.gz.*promises"):
    idx.read(path)


def test_not_an_idx_file_is_refused(tmp_path):
  path = tmp_path / "x"
  path.write_bytes(b"\x89PNG....")
  with pytest.raises(ValueError, match="not an IDX file"):
    idx.read(path)


def test_load_carves_validation_and_reports_counts(tiny_config):
  dataset = data.load(tiny_config)
  assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 240, "validation": 60, "test": 203}
  assert dataset.image_shape == (28, 28, 1)
  assert dataset.num_classes == 10
  assert dataset.splits["train"].images.dtype == np.uint8
  # The validation split does not depend on the training seed.
  tiny_config.seed = 7
  np.testing.assert_array_equal(data.load(tiny_config).splits["validation"].labels, dataset.splits["validation"].labels)


def test_labels_out_of_range_are_refused(tmp_path, tiny_config):
  from conftest import write_idx_dataset

  write_idx_dataset(tmp_path, 50, 20, num_classes=12)
  tiny_config.data_dir, tiny_config.validation_size = str(tmp_path), 10
  with pytest.raises(ValueError, match="labels outside"):
    data.load(tiny_config)


def test_missing_explicit_data_dir_is_an_error_not_a_download(tmp_path, tiny_config):
  tiny_config.data_dir = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="nowhere"):
    data.load(tiny_config)


def test_train_batches_are_this_processs_flat_batches_and_seeded(tiny_config):
  dataset = data.load(tiny_config)
  mean, std = data.channel_stats(dataset.splits["train"])
  kwargs = dict(global_batch=32, mean=mean, std=std)
  first = next(data.train_batches(dataset.splits["train"], seed=0, epoch=0, **kwargs))
  assert first["image"].shape == (32, 28, 28, 1) and first["image"].dtype == np.float32
  assert first["label"].shape == (32,)
  again = next(data.train_batches(dataset.splits["train"], seed=0, epoch=0, **kwargs))
  other_seed = next(data.train_batches(dataset.splits["train"], seed=1, epoch=0, **kwargs))
  other_epoch = next(data.train_batches(dataset.splits["train"], seed=0, epoch=1, **kwargs))
  np.testing.assert_array_equal(first["image"], again["image"])
  assert not np.array_equal(first["label"], other_seed["label"])
  assert not np.array_equal(first["label"], other_epoch["label"])
  batches = list(data.train_batches(dataset.splits["train"], seed=0, epoch=0, **kwargs))
  assert len(batches) == 240 // 32  # the incomplete last batch is dropped in training


def test_normalisation_uses_training_statistics(tiny_config):
  dataset = data.load(tiny_config)
  mean, std = data.channel_stats(dataset.splits["train"])
  images = np.concatenate(
    [
      b["image"].reshape(-1, 28, 28, 1)
      for b in data.train_batches(dataset.splits["train"], global_batch=40, seed=0, epoch=0, mean=mean, std=std)
    ]
  )
  assert abs(images.mean()) < 1e-3 and abs(images.std() - 1) < 1e-3


def test_eval_batches_cover_every_example_once(tiny_config):
  dataset = data.load(tiny_config)
  test = dataset.splits["test"]
  batches = list(data.eval_batches(test, global_batch=64, mean=np.zeros(1), std=np.ones(1)))
  assert len(batches) == 4  # 203 examples -> 3 full batches and one padded
  masks = np.concatenate([b["mask"].reshape(-1) for b in batches])
  labels = np.concatenate([b["label"].reshape(-1) for b in batches])
  assert masks.sum() == 203
  np.testing.assert_array_equal(labels[masks], test.labels)


def test_batch_that_does_not_divide_by_the_devices_is_refused():
  assert jax.device_count() == 8
  with pytest.raises(ValueError, match="does not divide by the 8 devices"):
    parallel.batch_layout(100)
