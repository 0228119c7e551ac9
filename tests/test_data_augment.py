"""Augmentation ops: their distributions, the evaluation views, and the two pipelines agreeing."""

import numpy as np
import pytest

from jaxcnn import data
from jaxcnn.data import augment

MEAN, STD = np.float32([0.5, 0.4, 0.3]), np.float32([0.2, 0.25, 0.3])


def _plan(spec, n, height=32, width=32, seed=0, **kwargs):
  chain = augment.Chain(spec, train=True, **kwargs)
  return chain.plan(np.random.default_rng(seed), np.full(n, height), np.full(n, width))


def test_random_crop_stays_inside_and_reaches_every_offset():
  plan = _plan("random_crop(24)", 20000, height=32, width=28)
  top, left, height, width = np.moveaxis(plan.windows[:, 0], -1, 0)
  assert (height == 24).all() and (width == 24).all()
  assert set(top) == set(range(9)) and set(left) == set(range(5))  # every allowed offset, none outside
  counts = np.bincount(top)
  assert counts.min() > 0.8 * counts.mean()  # and about equally often


def test_pad_then_crop_reaches_into_the_padding_by_at_most_the_pad():
  top = _plan("pad(4)|random_crop(32)", 20000).windows[:, 0, 0]
  assert set(top) == set(range(-4, 5))


def test_flip_probability_is_one_half():
  flips = _plan("flip_lr", 4000).flips
  assert 0.45 < flips.mean() < 0.55


def test_pca_lighting_shifts_have_the_papers_covariance():
  shifts = _plan("pca_lighting(0.1)", 40000).photometric[0] / 255.0
  expected = (
    augment.IMAGENET_PCA_EIGVEC @ np.diag(augment.IMAGENET_PCA_EIGVAL**2 * 0.01) @ augment.IMAGENET_PCA_EIGVEC.T
  )
  np.testing.assert_allclose(np.cov(shifts.T), expected, atol=2e-5)
  np.testing.assert_allclose(shifts.mean(axis=0), 0, atol=3e-4)


def test_random_sized_crop_keeps_area_and_aspect_in_range():
  windows = _plan("random_sized_crop(24)", 5000, height=100, width=80).windows[:, 0]
  top, left, height, width = windows.T
  assert (top >= 0).all() and (left >= 0).all() and (top + height <= 100).all() and (left + width <= 80).all()
  area = height * width / 8000
  assert area.min() > 0.07 and area.max() <= 1.0
  ratio = width / height
  assert ratio.min() > 0.7 and ratio.max() < 1.4


def test_resize_short_then_centre_crop_window():
  chain = augment.Chain("resize_short(256)|center_crop(224)", train=False)
  assert chain.output_size((375, 500)) == (224, 224)
  ((top, left, height, width),) = chain.plan(np.random.default_rng(0), [375], [500]).windows[:, 0]
  # 224/256 of the short side (328.1 pixels, edges rounded to whole pixels), centred.
  assert abs(height - 328.1) < 1 and abs(width - 328.1) < 1 and top == 23 and left == 85


def test_ten_crop_gives_the_four_corners_the_centre_and_their_mirror_images():
  chain = augment.Chain("ten_crop(4)", train=False)
  plan = chain.plan(np.random.default_rng(0), [8], [10])
  starts = [(2, 3), (0, 0), (0, 6), (4, 0), (4, 6)]
  assert [tuple(w[:2]) for w in plan.windows[0]] == [s for s in starts for _ in (0, 1)]
  assert plan.flips[0].tolist() == [False, True] * 5
  image = np.arange(8 * 10 * 3, dtype=np.uint8).reshape(1, 8, 10, 3)
  split = data.Split(np.repeat(image, 8, 0), np.zeros(8, np.int32))
  expected = (
    np.stack(
      [
        v[:, ::-1] if flip else v
        for (y, x) in starts
        for v in [image[0, y : y + 4, x : x + 4]]
        for flip in (False, True)
      ]
    ).astype(np.float32)
    / 255.0
  )
  for pipeline in ("tfdata", "jax"):
    batch = next(
      data.eval_batches(split, global_batch=8, mean=np.zeros(3), std=np.ones(3), augment_chain=chain, pipeline=pipeline)
    )
    assert batch["image"].shape == (8, 10, 4, 4, 3)
    np.testing.assert_allclose(np.asarray(batch["image"])[0], expected, atol=1e-6)


def test_vgg_multi_crop_views_count_and_fit():
  chain = augment.Chain("vgg", train=False, image_size=224)
  plan = chain.plan(np.random.default_rng(0), [300], [400])
  assert chain.num_views == 5 * 5 * 3 * 2 and plan.windows.shape == (1, 150, 4)
  top, left, height, width = np.moveaxis(plan.windows[0], -1, 0)
  assert (top >= 0).all() and (left >= 0).all() and (top + height <= 300).all() and (left + width <= 400).all()


@pytest.mark.parametrize(
  "spec,error",
  [
    ("random_crop(24)|warp(3)", "unknown augmentation op 'warp"),
    ("pca_lighting(0.1)|flip_lr", "geometric ops must come before"),
    ("random_crop(a b)", "Python literals"),
    ("pca_lighting(0.1, 'dataset')", "jaxcnn.data.stats"),
  ],
)
def test_bad_chains_are_refused(spec, error):
  with pytest.raises(ValueError, match=error):
    augment.Chain(spec, train=True)


def test_evaluation_chains_must_be_deterministic():
  with pytest.raises(ValueError, match="deterministic"):
    augment.Chain("random_crop(24)", train=False)


def test_crop_larger_than_the_image_is_refused():
  with pytest.raises(ValueError, match="does not fit"):
    _plan("random_crop(40)", 4)


@pytest.fixture(scope="module")
def rgb_split():
  rng = np.random.default_rng(0)
  return data.Split(rng.integers(0, 256, (96, 32, 32, 3), np.uint8), rng.integers(0, 10, 96).astype(np.int32))


@pytest.mark.parametrize(
  "spec,image_size",
  [
    ("pad(4)|random_crop(32)|flip_lr|pca_lighting(0.1)|color_jitter(0.4, 0.4, 0.4)", 0),
    ("resnet_cifar", 40),  # upsized, as for a model with a larger input
    ("random_sized_crop(24)|flip_lr", 0),
  ],
)
def test_tf_free_and_tfdata_pipelines_make_the_same_batches(rgb_split, spec, image_size):
  chain = augment.Chain(spec, train=True, image_size=image_size)
  kwargs = dict(global_batch=32, seed=5, epoch=2, mean=MEAN, std=STD, augment_chain=chain)
  tf_batches = list(data.train_batches(rgb_split, pipeline="tfdata", **kwargs))
  jax_batches = list(data.train_batches(rgb_split, pipeline="jax", **kwargs))
  assert len(tf_batches) == len(jax_batches) == 3
  for a, b in zip(tf_batches, jax_batches):
    np.testing.assert_array_equal(a["label"], np.asarray(b["label"]))
    np.testing.assert_allclose(a["image"], np.asarray(b["image"]), atol=1e-4)


@pytest.fixture(scope="module")
def rgb_files(rgb_split, tmp_path_factory):
  """rgb_split's images as PNG files (lossless: the file loader and the in-memory loader see the same pixels)."""
  from PIL import Image

  directory = tmp_path_factory.mktemp("rgb_files")
  paths = []
  for i, image in enumerate(rgb_split.images):
    Image.fromarray(image).save(directory / f"{i}.png")
    paths.append(str(directory / f"{i}.png"))
  n = len(paths)
  return data.FileSplit(np.array(paths, object), rgb_split.labels, np.full((n, 2), 32, np.int32), np.zeros(n, bool))


@pytest.mark.parametrize(
  "spec,image_size",
  [
    ("pad(4)|random_crop(32)|flip_lr|pca_lighting(0.1)|color_jitter(0.4, 0.4, 0.4)", 0),  # windows past the edge
    ("resnet_cifar", 40),  # every window enlarged
    ("random_sized_crop(24)|flip_lr", 0),  # windows shrunk and enlarged
  ],
)
def test_tf_free_file_loader_makes_the_in_memory_loaders_batches(rgb_split, rgb_files, spec, image_size):
  """Image files without TensorFlow: the host cuts and resizes each window (Pillow), the device does the rest.
  Same examples, windows, mirrors and photometric draws as from memory; pixels within Pillow's 8-bit rounding."""
  chain = augment.Chain(spec, train=True, image_size=image_size)
  kwargs = dict(global_batch=32, seed=5, epoch=2, mean=MEAN, std=STD, augment_chain=chain, pipeline="jax")
  memory_batches = list(data.train_batches(rgb_split, **kwargs))
  file_batches = list(data.train_batches(rgb_files, **kwargs))
  assert len(memory_batches) == len(file_batches) == 3
  for a, b in zip(memory_batches, file_batches):
    np.testing.assert_array_equal(a["label"], b["label"])
    difference = np.abs(np.asarray(a["image"]) - np.asarray(b["image"])) * STD * 255  # in 8-bit units
    assert difference.max() <= 1.01 and difference.mean() < 0.6


@pytest.mark.parametrize(
  "source_hw,window,out_hw",
  [
    ((37, 53), (0, 0, 37, 53), (20, 31)),  # downscaled, by other factors along each axis
    ((23, 17), (0, 0, 23, 17), (40, 29)),  # upscaled
    ((30, 41), (3, 5, 24, 20), (9, 33)),  # a window inside the image: shrunk along one axis, stretched along the other
    ((26, 26), (-4, 6, 30, 25), (17, 12)),  # a window past the edges: zeros outside the image
  ],
)
def test_the_hosts_and_the_devices_bilinear_resizes_agree(source_hw, window, out_hw):
  """`folder.cut_image` (Pillow, files on the host) and `jax_ops.view` (in-memory images on the device) are two
  implementations of one resize: half-pixel centres, no antialiasing. They agree within Pillow's 8-bit rounding."""

  from jaxcnn.data import folder, jax_ops

  rng = np.random.default_rng(sum(source_hw) + sum(out_hw))
  for _ in range(3):
    image = rng.integers(0, 256, (*source_hw, 3), np.uint8)
    on_host = folder.cut_image(image, np.array([window]), out_hw)[0].astype(np.float32)
    on_device = np.asarray(jax_ops.view(image, np.array(window, np.int32), False, out_hw))
    assert on_host.shape == on_device.shape == (*out_hw, 3)
    difference = np.abs(on_host - on_device)  # Pillow keeps 8 bits (rounding down, within float32 noise)
    assert difference.max() <= 1.01 and difference.mean() < 0.6, (difference.max(), difference.mean())


def test_tf_free_file_loader_evaluates_every_view_of_every_file_once(rgb_split, rgb_files):
  chain = augment.Chain("ten_crop(24)", train=False)
  kwargs = dict(global_batch=40, mean=MEAN, std=STD, augment_chain=chain, pipeline="jax")
  from_files = list(data.eval_batches(rgb_files, **kwargs))
  from_memory = list(data.eval_batches(rgb_split, **kwargs))
  assert [b["image"].shape for b in from_files] == [(40, 10, 24, 24, 3)] * 3
  assert [int(b["mask"].sum()) for b in from_files] == [40, 40, 16]  # 96 files, the last batch padded
  for a, b in zip(from_memory, from_files):
    # Crops without resizing: the same 8-bit pixels, exactly. The normalisation is float32 arithmetic that XLA
    # may order or fuse differently per path and CPU (one ulp seen on AVX-512), so the floats get a few ulps.
    pixels = [np.rint((np.asarray(x["image"]) * STD + MEAN) * 255) for x in (a, b)]
    np.testing.assert_array_equal(*pixels)
    np.testing.assert_allclose(a["image"], b["image"], rtol=4 * np.finfo(np.float32).eps, atol=1e-6)


def test_whole_images_are_normalised_on_the_host_by_default_as_tfdata_does(rgb_split):
  """No augmentation: `pipeline=auto` takes the TF-free loader for in-memory data and normalises on the host."""
  kwargs = dict(global_batch=32, seed=5, epoch=2, mean=MEAN, std=STD, augment_chain=augment.Chain("", train=True))
  tf_batches = list(data.train_batches(rgb_split, pipeline="tfdata", **kwargs))
  auto_batches = list(data.train_batches(rgb_split, **kwargs))
  assert len(tf_batches) == len(auto_batches) == 3
  for a, b in zip(tf_batches, auto_batches):
    assert isinstance(b["image"], np.ndarray) and b["image"].dtype == np.float32
    np.testing.assert_array_equal(a["label"], b["label"])
    np.testing.assert_allclose(a["image"], b["image"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("pipeline", ["tfdata", "jax"])
def test_same_seed_same_batches_other_seed_other_batches(rgb_split, pipeline):
  chain = augment.Chain("resnet_cifar", train=True)

  def first(seed):
    batches = data.train_batches(
      rgb_split, global_batch=32, seed=seed, epoch=0, mean=MEAN, std=STD, augment_chain=chain, pipeline=pipeline
    )
    return np.asarray(next(iter(batches))["image"])

  np.testing.assert_array_equal(first(1), first(1))
  assert not np.allclose(first(1), first(2))


def test_shards_are_disjoint_and_cover_the_epoch():
  order = data.pipeline.train_order(1000, 48, seed=0, epoch=3)
  for processes in (1, 2, 4):
    shards = [data.shard(order, 48, i, processes) for i in range(processes)]
    assert all(s.shape == (1000 // 48, 48 // processes) for s in shards)
    taken = np.concatenate([s.reshape(-1) for s in shards])
    assert len(set(taken)) == len(taken) == len(order) and set(taken) == set(order)
    # Step k's global batch is the same examples whatever the process count.
    np.testing.assert_array_equal(np.sort(np.concatenate([s[5] for s in shards])), np.sort(order[5 * 48 : 6 * 48]))
  with pytest.raises(ValueError, match="does not divide by 5 processes"):
    data.shard(order, 48, 0, 5)
