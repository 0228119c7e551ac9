"""The decode-once cache of image folders (jaxcnn/data/cache.py): same batches, no decoding, never stale."""

import json
import logging
import os
import pathlib
import shutil

import numpy as np
import pytest
from conftest import config_of, mounted_tmpfs, run_module
from data_fixtures import smooth, write_image_folder
from PIL import Image

from jaxcnn import data
from jaxcnn.data import augment, cache, folder, pack
from jaxcnn.data import pipeline as data_pipeline

# Pixel units: mean 0, std 1/255 leaves each batch on the 0..255 scale.
KW = dict(global_batch=4, seed=3, mean=np.zeros(3, np.float32), std=np.full(3, 1 / 255, np.float32))


def _jpeg_folder(root: pathlib.Path, sizes, seed=0) -> pathlib.Path:
  """Smooth RGB JPEGs (`smooth`: they resample like photographs), of `sizes` in each of two classes."""
  files = [(".jpg", "RGB", "JPEG")]
  return write_image_folder(
    root, ("c0", "c1"), ("",), seed=seed, sizes=sizes, pixels=smooth, files=files, quality=90, strays=()
  )


def _config(root, cache_dir="auto", augment_spec="alexnet"):
  return config_of(
    dataset="image_folder",
    data_dir=str(root),
    validation_size=0,
    batch_size=4,
    train_augment=augment_spec,
    image_size=32,
    pipeline="jax",
    data_cache=str(cache_dir),
  )


def _split(root):
  return data.load(_config(root)).splits["train"]


def _chain(spec="alexnet", image_size=32):
  return augment.Chain(spec, train=True, image_size=image_size)


def _epoch(split, epoch, row_cache=None, chain=None, start_batch=0):
  batches = data.train_batches(
    split,
    epoch=epoch,
    augment_chain=chain or _chain(),
    pipeline="jax",
    row_cache=row_cache,
    start_batch=start_batch,
    **KW,
  )
  return [np.asarray(b["image"]) for b in batches]


@pytest.fixture
def counted_decodes(monkeypatch):
  """What `folder.decode_rgb` (every decode of the host loader and the cache: OpenCV's or Pillow's) was given
  since the fixture started: paths, or a JPEG row's bytes."""
  calls = []
  real_decode = folder.decode_rgb

  def counting_decode(source, *args, **kwargs):
    calls.append(source)
    return real_decode(source, *args, **kwargs)

  monkeypatch.setattr(folder, "decode_rgb", counting_decode)
  return calls


def test_heads_of_the_paper_chains():
  assert cache.head_of(_chain()).spec == "resize_short(37)|center_crop(37)"
  assert cache.head_of(_chain()).fixed == (37, 37)
  assert cache.head_of(_chain()).tail.spec.startswith("random_crop(32)|flip_lr")
  assert cache.head_of(_chain("vgg")).spec == "max_short(73)"  # random_resize_short(37, 73): its largest side
  assert cache.head_of(_chain("googlenet")).spec == "max_short(114)"  # 32 / sqrt(0.08)
  assert cache.head_of(_chain("flip_lr")).spec == ""  # the decoded source


# Rows of 37x37 (4 kB: one write) and the paper's 256x256 (196 kB: written in cache.WRITE_PIECE pieces).
@pytest.mark.parametrize("image_size", [32, 224])
def test_cached_epochs_equal_uncached_bitwise_where_the_head_is_exact(tmp_path, image_size):
  # Shorter side = the head's resize (37, 256): the head only crops, so no pixel is resampled on either path.
  chain = _chain(image_size=image_size)
  short = cache.head_of(chain).fixed[0]
  split = _split(_jpeg_folder(tmp_path / "f", [(short, short + 3 * k) for k in range(5)]))
  rows = cache.RowCache(tmp_path / "c", split, cache.head_of(chain))
  for epoch in (0, 1):  # epoch 0 fills the rows it reads, epoch 1 reads them (and fills the rest)
    uncached, cached = _epoch(split, epoch, chain=chain), _epoch(split, epoch, rows, chain=chain)
    assert len(cached) == len(uncached) == 2
    for a, b in zip(uncached, cached):
      np.testing.assert_array_equal(a, b)
  assert rows.filled.sum() >= 8  # each epoch reads 8 of the 10 rows


def test_cached_epoch_within_tolerance_where_the_head_resamples(tmp_path):
  # Sources of 60-90 px: the head resizes to 37 and the tail crops, against one resize of a window of the
  # source (rounded to whole source pixels: up to half a pixel apart). Smooth images differ by a few units.
  rng = np.random.default_rng(1)
  split = _split(_jpeg_folder(tmp_path / "f", [tuple(rng.integers(60, 90, 2)) for _ in range(4)]))
  rows = cache.RowCache(tmp_path / "c", split, cache.head_of(_chain()))
  for a, b in zip(_epoch(split, 0), _epoch(split, 0, rows)):
    difference = np.abs(a - b)
    assert difference.mean() < 3.0 and np.percentile(difference, 99) < 12, (difference.mean(), difference.max())


@pytest.mark.parametrize("low, high", [(150, 190), (300, 380)])
def test_a_head_that_shrinks_a_jpeg_several_times_stays_within_the_tolerance(tmp_path, low, high):
  # Windows 4-10x the head's 37 px: the uncached path resamples the full decode as well (a head decoded at a
  # reduced DCT scale, 1/4 or 1/8, was 6-14 units apart on average).
  rng = np.random.default_rng(1)
  split = _split(_jpeg_folder(tmp_path / "f", [tuple(rng.integers(low, high, 2)) for _ in range(4)]))
  rows = cache.RowCache(tmp_path / "c", split, cache.head_of(_chain()))
  for a, b in zip(_epoch(split, 0), _epoch(split, 0, rows), strict=True):
    difference = np.abs(a - b)
    assert difference.mean() < 3.0 and np.percentile(difference, 99) < 12, (difference.mean(), difference.max())


def test_resume_from_the_cache_decodes_nothing_and_is_bitwise(tmp_path, counted_decodes):
  rng = np.random.default_rng(2)
  split = _split(_jpeg_folder(tmp_path / "f", [tuple(rng.integers(40, 70, 2)) for _ in range(8)]))
  rows = cache.RowCache(tmp_path / "c", split, cache.head_of(_chain()))
  pack.fill(rows, workers=2)
  whole = _epoch(split, 1, rows)
  counted_decodes.clear()
  resumed = _epoch(split, 1, rows, start_batch=2)
  assert counted_decodes == [] and rows.decodes == len(split)
  assert len(resumed) == len(whole) - 2 == 2
  for a, b in zip(whole[2:], resumed):
    np.testing.assert_array_equal(a, b)
  # A second run opens the same rows (same key, same place) and decodes nothing either.
  again = cache.RowCache(tmp_path / "c", split, cache.head_of(_chain()))
  assert again.store.path == rows.store.path
  np.testing.assert_array_equal(_epoch(split, 1, again, start_batch=2)[0], whole[2])
  assert counted_decodes == []


def test_changed_and_added_files_are_seen(tmp_path):
  root = _jpeg_folder(tmp_path / "f", [(37, 40 + k) for k in range(4)])
  split = _split(root)
  first = cache.RowCache(tmp_path / "c", split, cache.head_of(_chain()))
  pack.fill(first)
  # Same name and size, other pixels and modification time.
  target = pathlib.Path(split.paths[3])
  pixels = np.asarray(Image.open(target))
  Image.fromarray(255 - pixels).save(target, quality=90)
  os.utime(target, ns=(1, 1))
  changed = _split(root)
  rows = cache.RowCache(tmp_path / "c", changed, cache.head_of(_chain()))
  assert rows.key != first.key and not rows.filled.any()
  for a, b in zip(_epoch(changed, 0), _epoch(changed, 0, rows)):
    np.testing.assert_array_equal(a, b)
  assert sorted(p.name.split(".")[0] for p in rows.dir.iterdir()) == [rows.key] * 3  # the stale rows are gone
  # An added file: another key again, and its row is read.
  _jpeg_folder(tmp_path / "extra", [(37, 50)], seed=5)
  (tmp_path / "extra" / "c0" / "0.jpg").rename(root / "c0" / "new.jpg")
  added = _split(root)
  rows = cache.RowCache(tmp_path / "c", added, cache.head_of(_chain()))
  assert len(added) == 9 and not rows.filled.any()
  new = list(added.paths).index(str(root / "c0" / "new.jpg"))
  np.testing.assert_array_equal(rows.get(new), np.asarray(Image.open(root / "c0" / "new.jpg"))[:, 6:43])


def test_an_unwritable_cache_warns_and_reads_the_files(tmp_path, caplog):
  root = _jpeg_folder(tmp_path / "f", [(37, 40 + k) for k in range(4)])
  blocker = tmp_path / "a_file"
  blocker.write_text("")  # a directory under a regular file cannot be made, even by root
  pipeline = data.InputPipeline(_config(root, blocker / "cache"), data.load(_config(root)))
  with caplog.at_level(logging.WARNING):
    assert pipeline.row_cache() is None
  assert any("data cache not used" in r.getMessage() for r in caplog.records)
  assert "data cache (train): unavailable" in pipeline.describe()[-1]
  np.testing.assert_array_equal(
    next(iter(pipeline.train_batches(0)))["image"],
    next(iter(data.InputPipeline(_config(root, ""), data.load(_config(root))).train_batches(0)))["image"],
  )
  # Rows over the disk bound are refused the same way.
  config = _config(root, tmp_path / "c")
  config.data_cache_max_disk_fraction = 1e-15
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    assert data.InputPipeline(config, data.load(config)).row_cache() is None
  assert any("data_cache_max_disk_fraction" in r.getMessage() for r in caplog.records)


def test_the_start_line_states_place_and_disk_use(tmp_path):
  root = _jpeg_folder(tmp_path / "f", [(37, 40 + k) for k in range(4)])
  pipeline = data.InputPipeline(_config(root, tmp_path / "c"), data.load(_config(root)))
  line = pipeline.describe()[-1]
  rows = pipeline.row_cache()
  assert rows.disk_bytes() >= rows.store.nbytes == 8 * 37 * 37 * 3
  assert line.startswith(f"data cache (train): {rows.dir} (8 37x37 rows")
  assert f"{cache.size_text(rows.disk_bytes())} on disk" in line and "0/8 filled" in line
  assert "data cache: off" in data.InputPipeline(_config(root, ""), data.load(_config(root))).describe()[-1]


def _file_opens(calls: list) -> list:
  """The image files among `counted_decodes`' calls (JPEG rows decode their bytes, not a file)."""
  return [fp for fp in calls if isinstance(fp, (str, os.PathLike))]


def test_jpeg_rows_give_every_epoch_the_pixels_of_the_first_and_resume_bitwise(tmp_path, counted_decodes):
  """Re-encoded rows (FFCV's format): the first pass trains on its rows' decoded JPEGs, so a later pass over the
  same epoch (a resume) is bitwise the first; against the uncached path they stay within a quality-90 JPEG's
  loss; a resume decodes no image file."""
  rng = np.random.default_rng(4)
  split = _split(_jpeg_folder(tmp_path / "f", [tuple(rng.integers(37, 70, 2)) for _ in range(8)]))
  rows = cache.RowCache(tmp_path / "c", split, cache.head_of(_chain()), row_format="jpeg")
  assert rows.store.name == "jpeg" and rows.store.path.suffix == ".jpegs"
  first_pass = _epoch(split, 0, rows)
  assert len(_file_opens(counted_decodes)) == 16 and rows.filled.all()  # each file once (an epoch reads all 16)
  counted_decodes.clear()
  again = _epoch(split, 0, rows)
  resumed = _epoch(split, 0, rows, start_batch=2)
  assert _file_opens(counted_decodes) == [] and len(counted_decodes) == 16 + 8  # only the rows' JPEGs
  for a, b in zip(first_pass, again, strict=True):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(first_pass[2:], resumed, strict=True):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(_epoch(split, 0), first_pass, strict=True):  # quality 90 with 4:2:0 chroma: ~2-3 units more
    difference = np.abs(a - b)
    assert difference.mean() < 5.0 and np.percentile(difference, 99) < 20, (difference.mean(), difference.max())
  offsets, lengths = rows.store.index[:, 0], rows.store.index[:, 1]
  order = np.argsort(offsets)  # appended from the decoding threads: whole, one after another, nothing between
  assert (lengths > 0).all() and offsets[order[0]] == 0
  np.testing.assert_array_equal(offsets[order[1:]], (offsets + lengths)[order[:-1]])
  assert rows.store.path.stat().st_size == lengths.sum() < 0.5 * 16 * 37 * 37 * 3
  reopened = cache.RowCache(tmp_path / "c", split, cache.head_of(_chain()), row_format="auto")
  assert reopened.store.name == "jpeg"  # "auto" takes the rows already made
  np.testing.assert_array_equal(reopened.get(3), rows.get(3))


def _start_lines(root, cache_dir, caplog, **fields):
  config = _config(root, cache_dir)
  config.update(fields)
  pipeline = data.InputPipeline(config, data.load(config))
  with caplog.at_level(logging.WARNING):
    return pipeline.row_cache(), pipeline.describe()[-1]


def test_auto_stores_jpeg_rows_where_raw_rows_do_not_fit_and_says_so(tmp_path, caplog):
  root = _jpeg_folder(tmp_path / "f", [(37, 40 + k) for k in range(4)])
  (tmp_path / "c").mkdir()
  free = shutil.disk_usage(tmp_path / "c").free
  raw = 8 * 37 * 37 * 3
  rows, line = _start_lines(root, tmp_path / "c", caplog, data_cache_max_disk_fraction=raw / 2 / free)
  assert rows.store.name == "jpeg", line
  assert (
    f"{rows.dir} (8 37x37 rows as JPEG q90 (raw rows would take 32.9 kB, over data_cache_max_disk_fraction=" in line
  )
  rows, line = _start_lines(root, tmp_path / "c2", caplog, data_cache_format="raw")
  assert rows.store.name == "raw" and "JPEG" not in line
  # Neither fits, or the format asked for does not: a warning names it, and the files are read.
  for fields, named in (
    ({"data_cache_max_disk_fraction": raw / 20 / free}, "its JPEG q90 rows would take about 3.3 kB"),
    ({"data_cache_max_disk_fraction": raw / 2 / free, "data_cache_format": "raw"}, "its raw rows would take about"),
  ):
    caplog.clear()
    rows, line = _start_lines(root, tmp_path / "c3", caplog, **fields)
    warnings = [r.getMessage() for r in caplog.records if "data cache not used" in r.getMessage()]
    assert rows is None and len(warnings) == 1 and named in warnings[0], warnings
  with pytest.raises(ValueError, match="data_cache_format must be one of auto, raw, jpeg, got 'png'"):
    _start_lines(root, tmp_path / "c4", caplog, data_cache_format="png")


@pytest.fixture
def tiny_filesystem(tmp_path):
  """A 32 KiB tmpfs (root only): eight pages."""
  with mounted_tmpfs(tmp_path / "tiny", "32k") as mount:
    yield mount


def test_a_disk_filling_under_jpeg_rows_warns_once_and_the_epoch_goes_on(
  tmp_path, tiny_filesystem, caplog, counted_decodes
):
  # Noise compresses badly: the rows outgrow their estimate (a tenth of raw) and the disk's 5 pages left for them.
  root = write_image_folder(tmp_path / "f", ("c0", "c1"), ("",), sizes=[(120, 120)] * 12, strays=(), quality=95)
  split = _split(root)
  rows = cache.RowCache(tiny_filesystem, split, cache.head_of(_chain()), max_disk_fraction=1.0, row_format="jpeg")
  with caplog.at_level(logging.WARNING):
    cached = _epoch(split, 0, rows)
  warnings = [r.getMessage() for r in caplog.records if "cannot store more rows" in r.getMessage()]
  assert len(warnings) == 1 and "No space left on device" in warnings[0], warnings
  stored = int(rows.filled.sum())
  assert 0 < stored < len(split) and len(cached) == 6
  counted_decodes.clear()
  assert len(_epoch(split, 1, rows)) == 6
  assert len(_file_opens(counted_decodes)) == len(split) - stored  # the rows not stored: read from their files


def test_pack_fills_jpeg_rows_from_worker_processes(tmp_path):
  rng = np.random.default_rng(5)
  split = _split(_jpeg_folder(tmp_path / "f", [tuple(rng.integers(37, 70, 2)) for _ in range(12)]))
  by_threads = cache.RowCache(tmp_path / "a", split, cache.head_of(_chain()), row_format="jpeg")
  by_processes = cache.RowCache(tmp_path / "b", split, cache.head_of(_chain()), row_format="jpeg")
  assert pack.fill(by_threads, workers=2)[0] == pack.fill(by_processes, workers=2, processes=True)[0] == 24
  assert by_processes.filled.all() and by_processes.decodes == 24
  for i in range(24):  # the same rows, whichever process appended them where
    np.testing.assert_array_equal(by_processes.get(i), by_threads.get(i))


def test_eval_splits_are_cached_under_the_eval_chains_head_and_give_the_uncached_batches(tmp_path, counted_decodes):
  """Validation (every epoch, raw and EMA weights) and test splits of a folder read their eval chain's head
  (AlexNet's ten crops: the image with its shorter side resized) from rows as training does: the same batches and
  masks (bitwise: shorter sides of 37, so the head resamples nothing), no image file opened after the first pass."""
  root = write_image_folder(
    tmp_path / "f", ("c0", "c1"), ("train", "test"), sizes=[(37, 37 + 5 * k) for k in range(5)], pixels=smooth,
    files=[(".jpg", "RGB", "JPEG")], strays=(),
  )  # fmt: skip
  config = _config(root, tmp_path / "c")
  config.update(eval_augment="ten_crop", validation_size=4)
  pipeline = data.InputPipeline(config, data.load(config))
  uncached_config = config.copy_and_resolve_references()
  uncached_config.data_cache = ""
  uncached = data.InputPipeline(uncached_config, data.load(uncached_config))
  lines = [line for line in pipeline.describe() if line.startswith("data cache (")]
  assert sorted(line.split(")")[0][len("data cache (") :] for line in lines) == ["test", "train", "validation"]
  assert pipeline.row_cache("test").head.spec == "resize_short(37)", lines
  for name in ("validation", "test"):
    counted_decodes.clear()
    first = list(pipeline.eval_batches(name, 4))
    assert len(_file_opens(counted_decodes)) == len(pipeline.dataset.split(name))
    counted_decodes.clear()
    again = list(pipeline.eval_batches(name, 4))
    assert _file_opens(counted_decodes) == [], name
    expected = list(uncached.eval_batches(name, 4))
    assert len(first) == len(again) == len(expected) == -(-len(pipeline.dataset.split(name)) // 4)
    for batches in (first, again):
      for a, b in zip(batches, expected, strict=True):
        assert a["image"].shape[1] == 10  # the ten crops
        for key in ("image", "label", "mask"):
          np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=f"{name} {key}")


@pytest.mark.parametrize(
  ("eval_split", "stop_at_accuracy_split", "cached"),
  [
    ("validation", "validation", ["train", "validation"]),  # the paper configs' setting
    ("test", "validation", ["test", "train", "validation"]),  # --mode=eval reads test
    ("validation", "test", ["test", "train", "validation"]),  # test watched after every epoch
    ("train", "validation", ["train", "validation"]),  # train under the eval chain: uncached
  ],
)
def test_only_the_splits_a_run_reads_get_a_cache_on_disk(tmp_path, eval_split, stop_at_accuracy_split, cached):
  """Opening a split's cache allocates all its rows on disk, so a start-up that opened every split's gave a
  folder's test split gigabytes it is never read into (the paper configs evaluate validation). The start lines and
  the cache directory hold the splits the run evaluates and nothing else."""
  root = write_image_folder(
    tmp_path / "f", ("c0", "c1"), ("train", "test"), sizes=[(37, 37 + 5 * k) for k in range(5)], pixels=smooth,
    files=[(".jpg", "RGB", "JPEG")], strays=(),
  )  # fmt: skip
  config = _config(root, tmp_path / "c")
  config.update(validation_size=4, eval_split=eval_split, stop_at_accuracy_split=stop_at_accuracy_split)
  pipeline = data.InputPipeline(config, data.load(config))
  lines = [line for line in pipeline.describe() if line.startswith("data cache (")]
  assert sorted(line.split(")")[0][len("data cache (") :] for line in lines) == cached, lines
  on_disk = {path.name.split("-")[1] for path in (tmp_path / "c").iterdir()}
  assert sorted(on_disk) == cached, sorted((tmp_path / "c").iterdir())


CROP_AND_FLIP = "resize_short(37)|center_crop(37)|random_crop(32)|flip_lr"


def _assert_finished_from(batches, views) -> None:
  """Each batch (normalised to 0..255 by KW's statistics) is its uint8 views [batch, 1, 32, 32, 3], each mirrored
  where the plan flips it or as cut (within float rounding); both kinds occur."""
  assert len(views) == len(batches) == 2
  kinds = []
  for images, batch_views in zip(batches, views):
    assert batch_views.dtype == np.uint8 and batch_views.shape == (4, 1, 32, 32, 3)
    for image, view in zip(images, batch_views[:, 0]):
      kinds.append("mirrored" if np.allclose(image, view[:, ::-1], atol=1e-3) else "as cut")
      assert np.allclose(image, view[:, ::-1] if kinds[-1] == "mirrored" else view, atol=1e-3)
  assert set(kinds) == {"mirrored", "as cut"}, kinds  # both branches checked


def _views(split, rows, chain, epoch):
  return list(data_pipeline.cached_train_views(split, rows, chain, global_batch=4, seed=3, epoch=epoch))


def test_the_hosts_share_of_a_cached_batch_is_the_views_the_device_finishes(tmp_path):
  """`cached_train_views` (what `python -m jaxcnn.bench.pipeline` times as the host's share) yields the uint8 views
  each cached batch is made of: the batch is those views, mirrored where the plan flips, normalised (here to 0..255
  by KW's statistics)."""
  chain = _chain(CROP_AND_FLIP)
  split = _split(_jpeg_folder(tmp_path / "f", [(37, 37 + 3 * k) for k in range(5)]))
  rows = cache.RowCache(tmp_path / "c", split, cache.head_of(chain))
  _assert_finished_from(_epoch(split, 1, rows, chain), _views(split, rows, chain, 1))


def test_a_first_pass_decodes_each_file_once_and_cuts_the_uncached_views(tmp_path, counted_decodes):
  """The host's share of a first pass (`cached_train_views` of epoch 0 on a fresh cache, the bench's
  `first_pass_host_images_per_sec`): each file of the epoch is decoded once, its head stored and its views cut from
  that row; where the head is exact (shorter sides 37: it only crops) they are bitwise the views the uncached
  path finishes into its batches, and reading the stored rows back gives the same views without a decode."""
  chain = _chain(CROP_AND_FLIP)
  split = _split(_jpeg_folder(tmp_path / "f", [(37, 37 + 3 * k) for k in range(5)]))
  uncached = _epoch(split, 0, chain=chain)
  rows = cache.RowCache(tmp_path / "c", split, cache.head_of(chain))
  counted_decodes.clear()
  first_pass = _views(split, rows, chain, 0)
  read = set(split.paths[data_pipeline.train_order(len(split), 4, 3, 0)])
  assert sorted(counted_decodes) == sorted(read) and rows.decodes == len(read) == 8  # once each
  assert rows.filled.sum() == 8
  _assert_finished_from(uncached, first_pass)
  counted_decodes.clear()
  for again, view in zip(_views(split, rows, chain, 0), first_pass, strict=True):
    np.testing.assert_array_equal(again, view)
  assert counted_decodes == []


def test_a_first_pass_where_the_head_resamples_stores_the_rows_its_views_came_from(tmp_path):
  """Sources of 60-90 px (the head resizes; against the uncached path see the resampling tolerance above): the
  first pass's views are bitwise those cut later from the stored rows, and the device finishes them into the
  batches of epoch 0."""
  chain = _chain(CROP_AND_FLIP)
  rng = np.random.default_rng(4)
  split = _split(_jpeg_folder(tmp_path / "f", [tuple(rng.integers(60, 90, 2)) for _ in range(4)]))
  rows = cache.RowCache(tmp_path / "c", split, cache.head_of(chain))
  first_pass = _views(split, rows, chain, 0)
  assert rows.decodes == 8 and rows.filled.all()
  for again, view in zip(_views(split, rows, chain, 0), first_pass, strict=True):
    np.testing.assert_array_equal(again, view)
  assert rows.decodes == 8
  _assert_finished_from(_epoch(split, 0, rows, chain), first_pass)  # the batches a first epoch trains on


def _edge_padded_cut(pixels: np.ndarray, window, out_hw) -> np.ndarray:
  """What `folder.cut_image` computed for every resized window before its one-crop frame: the window (zeros
  outside the image) edge-padded by one pixel in NumPy, then Pillow's bilinear EXTENT transform."""
  top, left, height, width = window
  view = np.asarray(Image.fromarray(pixels).crop((left, top, left + width, top + height)))  # zeros outside
  framed = Image.fromarray(np.pad(view, ((1, 1), (1, 1), (0, 0)), mode="edge"))
  extent = (1, 1, 1 + width, 1 + height)
  return np.asarray(framed.transform(out_hw[::-1], Image.Transform.EXTENT, extent, Image.Resampling.BILINEAR))


def _random_windows(count: int, seed: int):
  """(window, out_hw) pairs over a 90x120 image: inside, across the border, keeping one side, shrinking, growing."""
  rng = np.random.default_rng(seed)
  for _ in range(count):
    out_hw = tuple(int(v) for v in rng.integers(8, 64, 2))
    size = rng.integers(1, 130, 2) if rng.random() < 0.7 else np.array(out_hw) + rng.integers(0, 3, 2)
    yield (int(rng.integers(-20, 90)), int(rng.integers(-20, 120)), int(size[0]), int(size[1])), out_hw


def test_cutting_a_window_in_one_crop_gives_the_edge_padded_bits(tmp_path, monkeypatch):
  """Pillow's `folder.cut_image` frames a shrinking window with the pixels around it (one slice of the decoded
  image): bitwise the edge-padded window's result, since no sample weighs the frame; windows
  that grow keep the padding."""
  monkeypatch.setenv(folder.RESIZE_ENV, "pillow")
  image = folder.decode_rgb(str(_jpeg_folder(tmp_path / "f", [(90, 120)]) / "c0" / "0.jpg"))
  kinds = set()
  for window, out_hw in _random_windows(300, seed=5):
    kinds.add("shrinks" if window[2] >= out_hw[0] and window[3] >= out_hw[1] else "grows")
    cut = folder.cut_image(image, np.array([window]), out_hw)[0]
    np.testing.assert_array_equal(cut, _edge_padded_cut(image, window, out_hw), err_msg=f"{window} -> {out_hw}")
  assert kinds == {"shrinks", "grows"}


def test_opencv_and_pillow_cut_windows_within_one_unit(tmp_path, monkeypatch):
  """The two host resizers (`folder.resizer`) compute one bilinear resize: within one 8-bit unit of each other
  on every kind of window; the default is OpenCV (a dependency), and its rows are keyed apart from Pillow's."""
  image = folder.decode_rgb(str(_jpeg_folder(tmp_path / "f", [(90, 120)]) / "c0" / "0.jpg"))
  assert folder.resizer() == "opencv"
  cuts, keys = {}, {}
  for name in folder.RESIZERS:
    monkeypatch.setenv(folder.RESIZE_ENV, name)
    cuts[name] = [folder.cut_image(image, np.array([w]), hw)[0].astype(int) for w, hw in _random_windows(200, 7)]
    keys[name] = cache.key_of(cache.files_digest([str(tmp_path / "f" / "c0" / "0.jpg")]), "resize_short(32)", "raw")
  differences = [np.abs(a - b).max() for a, b in zip(cuts["opencv"], cuts["pillow"])]
  assert max(differences) == 1, max(differences)  # 1, not 0: OpenCV's fixed-point weights do round differently
  assert keys["opencv"] != keys["pillow"]
  monkeypatch.setenv(folder.RESIZE_ENV, "lanczos")
  with pytest.raises(ValueError, match="JAXCNN_HOST_RESIZE must be one of opencv, pillow, got 'lanczos'"):
    folder.cut_image(image, np.array([[0, 0, 50, 50]]), (20, 20))


def test_the_pipeline_bench_measures_a_users_folder(tmp_path):
  folder = _jpeg_folder(tmp_path / "f", [(40, 60), (70, 45), (50, 50), (64, 90)] * 4)
  out = tmp_path / "pipeline.json"
  args = ("--config=alexnet", f"--config.data_dir={folder}", "--config.batch_size=4", "--config.image_size=32")
  result = run_module("jaxcnn.bench.pipeline", *args, "--batches=2", "--step_batches=1", f"--json={out}")
  assert result.returncode == 0, result.stderr[-2000:]
  measured = json.loads(out.read_text())
  rates = ("first_pass_images_per_sec", "first_pass_host_images_per_sec", "cached_images_per_sec")
  for rate in (*rates, "cached_host_images_per_sec"):
    assert measured[rate] > 0, measured
  assert measured["cores"] >= 1 and measured["cache_head"] == "resize_short(37)|center_crop(37)", measured
  # 32 images less the validation share, a 37x37x3 row each (and the fill marks and the note)
  assert measured["train_step_images_per_sec"] > 0 and measured["cache_bytes"] >= 28 * 37 * 37 * 3, measured
  assert "first pass, the host's share" in result.stdout and "cached, the host's share" in result.stdout
  assert "per core" in result.stdout
