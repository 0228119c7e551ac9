"""Sources: CIFAR files, image folders, synthetic and TFDS data; bad data; the TF-free import path."""

import functools
import os
import pickle
import subprocess
import sys

import jax
import numpy as np
import pytest
import scipy.special
from conftest import config_of
from data_fixtures import MIXED, write_cifar_binary, write_cifar_python, write_image_folder, write_tfds
from PIL import Image

from jaxcnn import data, inference, models, optim, parallel, train
from jaxcnn.data import cache, folder, images, stats, tf_ops

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(dataset, data_dir="", **overrides):
  base = dict(dataset=dataset, data_dir=str(data_dir), validation_size=0, batch_size=16, eval_batch_size=16)
  return config_of(base, overrides)


def test_cifar10_pickles(tmp_path):
  write_cifar_python(tmp_path)
  dataset = data.load(_config("cifar10", tmp_path))
  assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 40, "test": 8}
  train = dataset.split("train")
  assert train.images.shape == (40, 32, 32, 3) and train.images.dtype == np.uint8 and train.labels.dtype == np.int32
  assert dataset.class_names[:2] == ("class0", "class1") and dataset.num_classes == 10
  # Rows are the red plane, then green, then blue.
  raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes())[b"data"]
  np.testing.assert_array_equal(train.images[0, :, :, 1].reshape(-1), raw[0, 1024:2048])


def test_cifar100_binary_uses_fine_labels(tmp_path):
  directory = write_cifar_binary(tmp_path, "cifar100")
  dataset = data.load(_config("cifar100", tmp_path))
  raw = np.fromfile(directory / "train.bin", np.uint8).reshape(-1, 3074)
  np.testing.assert_array_equal(dataset.split("train").labels, raw[:, 1])
  assert dataset.num_classes == 100 and len(dataset.split("test")) == 6


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path):
  directory = write_cifar_python(tmp_path)

  class Payload:
    def __reduce__(self):
      return (os.system, ("touch " + str(tmp_path / "pwned"),))

  (directory / "data_batch_2").write_bytes(pickle.dumps({b"data": Payload()}))
  with pytest.raises(ValueError, match="data_batch_2.*refusing to load (posix|os)"):
    data.load(_config("cifar10", tmp_path))
  assert not (tmp_path / "pwned").exists()


def test_cifar_binary_of_the_wrong_length_is_refused(tmp_path):
  directory = write_cifar_binary(tmp_path, "cifar10")
  with open(directory / "test_batch.bin", "ab") as f:
    f.write(b"\0" * 7)
  with pytest.raises(ValueError, match="test_batch.bin.*whole number of 3073-byte"):
    data.load(_config("cifar10", tmp_path))


def test_image_folder_reads_every_format_and_mode(tmp_path):
  root = write_image_folder(tmp_path / "pets", splits=("train", "val"), per_class=9)
  dataset = data.load(_config("image_folder", root))
  assert dataset.class_names == ("cat", "dog")
  assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 18, "validation": 18}  # notes.txt ignored
  train = dataset.split("train")
  assert sorted(set(train.labels)) == [0, 1] and (np.bincount(train.labels) == 9).all()
  assert train.use_pil.sum() == 2  # the palette BMPs, which TensorFlow decodes wrongly
  # Every file decodes to its Pillow RGB pixels (JPEG decoders upsample chroma differently: a few units).
  config = _config("image_folder", root, train_augment="center_crop(24)", eval_augment="center_crop(24)")
  pipeline = data.InputPipeline(config, dataset)
  batches = list(pipeline.eval_batches("train"))
  images = np.concatenate([b["image"].reshape(-1, 24, 24, 3) for b in batches])[:18] * pipeline.std + pipeline.mean
  for i, path in enumerate(train.paths):
    with Image.open(path) as image:
      if image.mode == "I;16":
        image = image.point(lambda v: v / 257).convert("L")
      rgb = np.asarray(image.convert("RGB"), np.float32) / 255.0
    top, left = (rgb.shape[0] - 24) // 2, (rgb.shape[1] - 24) // 2
    assert np.abs(images[i] - rgb[top : top + 24, left : left + 24]).mean() < 3 / 255, path


def test_image_folder_carves_a_seeded_validation_fraction(tmp_path):
  root = write_image_folder(tmp_path, classes=("a", "b", "c"), splits=("",), per_class=10)
  config = _config("image_folder", root, validation_fraction=0.2, validation_size=5, image_size=24)
  first, second = data.load(config), data.load(config)
  assert len(first.split("train")) == 24 and len(first.split("validation")) == 6
  np.testing.assert_array_equal(first.split("validation").paths, second.split("validation").paths)
  # The fraction overrides the size, and the start line says so.
  line = "validation: 6 of the 30 training images, carved with a fixed seed (validation_fraction=0.2, which "
  assert first.validation == line + "overrides validation_size=5)"
  assert data.InputPipeline(config, first).describe()[1] == first.validation
  assert data.load(_config("image_folder", root, validation_size=5)).validation.endswith("(validation_size=5)")
  config.update(validation_size="auto")
  assert data.load(config).validation.endswith("(validation_fraction=0.2)")
  assert data.load(_config("image_folder", root)).validation == "validation: none (validation_size=0)"


def test_image_folder_train_batches_from_jpeg_with_alexnet_preset(tmp_path):
  root = write_image_folder(tmp_path, splits=("train",), per_class=8, size=(70, 90))
  config = _config("image_folder", root, train_augment="alexnet", eval_augment="alexnet", image_size=48)
  config.eval_batch_size = 160  # views: 16 images of ten crops
  pipeline = data.InputPipeline(config, data.load(config))
  assert pipeline.image_shape == (48, 48, 3)
  batch = next(iter(pipeline.train_batches(0)))
  assert batch["image"].shape == (16, 48, 48, 3) and np.isfinite(batch["image"]).all()
  views = next(iter(pipeline.eval_batches("train")))
  assert views["image"].shape == (16, 10, 48, 48, 3) and views["mask"].all()


def test_opencv_decodes_jpegs_bitwise_as_pillow_and_leaves_the_rest_to_it(tmp_path, monkeypatch):
  """`folder.decode_rgb` with OpenCV (the default where cv2 imports) gives Pillow's pixels bitwise for every kind
  of JPEG a folder holds (4:2:0, 4:4:4, progressive, greyscale, an EXIF rotation tag, which neither applies) and
  hands CMYK JPEGs, PNGs and BMPs to Pillow."""
  rng = np.random.default_rng(0)
  pixels = rng.integers(0, 256, (37, 53, 3), np.uint8)
  exif = Image.Exif()
  exif[0x0112] = 6  # "rotate 90 degrees": TensorFlow and Pillow ignore it, so must OpenCV
  variants = {
    "420.jpg": dict(quality=75),
    "444.jpg": dict(quality=95, subsampling=0),
    "progressive.jpg": dict(quality=80, progressive=True),
    "exif.jpg": dict(quality=85, exif=exif.tobytes()),
  }
  for name, options in variants.items():
    Image.fromarray(pixels).save(tmp_path / name, "JPEG", **options)
  Image.fromarray(pixels).convert("L").save(tmp_path / "grey.jpg", "JPEG")
  Image.fromarray(pixels).convert("CMYK").save(tmp_path / "cmyk.jpg", "JPEG")
  Image.fromarray(pixels).save(tmp_path / "rgb.png")
  kinds = {"420.jpg": 3, "444.jpg": 3, "progressive.jpg": 3, "exif.jpg": 3, "grey.jpg": 1, "cmyk.jpg": 4, "rgb.png": 0}
  for name, components in kinds.items():
    path = str(tmp_path / name)
    assert folder._jpeg_components(np.fromfile(path, np.uint8)) == components, name
    monkeypatch.setenv(folder.RESIZE_ENV, "pillow")
    by_pillow = folder.decode_rgb(path)
    monkeypatch.setenv(folder.RESIZE_ENV, "opencv")
    np.testing.assert_array_equal(folder.decode_rgb(path), by_pillow, err_msg=name)
    np.testing.assert_array_equal(folder.decode_rgb((tmp_path / name).read_bytes()), by_pillow, err_msg=name)
    assert by_pillow.shape == (37, 53, 3), name


def test_every_reader_of_image_files_decodes_them_alike(tmp_path):
  """Statistics, the host loader, the decode-once cache, tf.data's Pillow fallback and predict all read a file
  through `folder.decode_rgb`: the same pixels, whatever the mode."""
  root = write_image_folder(tmp_path, classes=("a",), splits=("",), per_class=len(MIXED), size=(20, 24))
  paths = sorted(str(p) for p in (root / "a").iterdir() if p.suffix != ".txt")
  window = np.array([[0, 0, 20, 24]])
  for path in paths:
    pixels = folder.decode_rgb(path)
    assert pixels.shape == (20, 24, 3) and pixels.dtype == np.uint8, path
    with open(path, "rb") as f:
      np.testing.assert_array_equal(tf_ops._pil_decode(f.read()), pixels, err_msg=path)
    np.testing.assert_array_equal(stats._read_rgb(path), pixels, err_msg=path)
    np.testing.assert_array_equal(folder.cut_file(path, window, (20, 24))[0], pixels, err_msg=path)
    np.testing.assert_array_equal(cache.head_row(path, window[0], (20, 24)), pixels, err_msg=path)
    np.testing.assert_array_equal(images.read_resized([path], (20, 24, 3))[0], pixels, err_msg=path)
    with Image.open(path) as image:
      if image.mode == "I;16":  # scaled to 8 bits as TensorFlow's decoders scale it, not clipped at 255
        np.testing.assert_allclose(pixels[..., 0], np.asarray(image, np.float64) / 257, atol=1)
      elif image.mode in ("RGB", "L", "P", "RGBA"):  # alpha dropped, not blended
        np.testing.assert_array_equal(pixels, np.asarray(image.convert("RGB")), err_msg=path)
      if image.mode in ("RGB", "L"):  # predict for a greyscale model: Pillow's own RGB-to-grey weights
        grey = np.asarray(image.convert("L"))
        np.testing.assert_array_equal(images.read_resized([path], (20, 24, 1))[0, ..., 0], grey, err_msg=path)
  bad = root / "a" / "bad.jpg"
  bad.write_bytes(b"not an image")
  assert str(folder.undecodable([paths[0], str(bad)], OSError("failed"))).startswith(f"{bad}: cannot decode image")
  with pytest.raises(ValueError, match=f"{bad}: cannot read image"):
    images.read_resized([bad], (20, 24, 3))


def _truncate(path):
  raw = path.read_bytes()
  path.write_bytes(raw[: len(raw) // 2])


@pytest.mark.parametrize(
  "damage,reason",
  [
    (_truncate, "truncated"),
    (lambda p: p.write_bytes(b"this is text, not a JPEG"), "cannot identify"),
    (lambda p: p.write_bytes(b""), "empty file"),
  ],
)
def test_bad_image_is_named_or_skipped_and_counted(tmp_path, damage, reason, caplog):
  root = write_image_folder(tmp_path, splits=("",), per_class=4)
  bad = root / "dog" / "0a.jpg"
  damage(bad)
  with pytest.raises(ValueError, match=f"{bad}.*{reason}.*skip_bad_images"):
    data.load(_config("image_folder", root))
  dataset = data.load(_config("image_folder", root, skip_bad_images=True))
  assert len(dataset.split("train")) == 7 and str(bad) not in set(dataset.split("train").paths)
  assert "skipped 1 unreadable image" in caplog.text


@pytest.mark.parametrize("pipeline", ["tfdata", "jax"])
def test_image_that_fails_only_when_decoded_is_named(tmp_path, pipeline):
  root = write_image_folder(tmp_path, splits=("",), per_class=2, size=(40, 40))
  bad = root / "cat" / "0a.jpg"
  raw = bytearray(bad.read_bytes())
  raw[len(raw) // 3 : len(raw) // 3 + 400] = b"\xff\xd9" * 200  # end-of-image markers inside the scan data
  bad.write_bytes(bytes(raw))
  config = _config(
    "image_folder", root, train_augment="resize(16)", eval_augment="resize(16)", eval_batch_size=8, pipeline=pipeline
  )
  dataset = data.load(config)  # the header and the end marker are intact
  with pytest.raises(ValueError, match=f"{bad}: cannot decode"):
    data.InputPipeline(config, dataset)  # estimating the statistics reads it
  (tmp_path / "stats.json").write_text('{"mean": [0.5, 0.5, 0.5], "std": [0.3, 0.3, 0.3]}')
  config.stats_file = str(tmp_path / "stats.json")
  pipeline = data.InputPipeline(config, dataset)
  try:
    list(pipeline.eval_batches("train"))
  except ValueError as e:
    assert str(bad) in str(e)
  else:  # libjpeg may also decode such damage without complaint; then there is nothing to name
    pytest.skip("this libjpeg decoded the damaged file")


def test_empty_class_folder_is_refused(tmp_path):
  root = write_image_folder(tmp_path, splits=("",), per_class=2)
  (root / "zebra").mkdir()
  (root / "zebra" / "readme.md").write_text("todo")
  with pytest.raises(ValueError, match="zebra: empty class folder"):
    data.load(_config("image_folder", root))


def test_missing_split_and_missing_folder_are_refused(tmp_path):
  root = write_image_folder(tmp_path, splits=("",), per_class=2)
  with pytest.raises(ValueError, match="has no split 'test'"):
    data.load(_config("image_folder", root)).split("test")
  with pytest.raises(FileNotFoundError, match="does not exist"):
    data.load(_config("image_folder", tmp_path / "nowhere"))
  with pytest.raises(ValueError, match="needs --config.data_dir"):
    data.load(_config("image_folder", ""))


def test_synthetic_data_of_any_shape():
  config = _config("synthetic")
  config.synthetic.update(image_shape=(12, 20, 5), num_classes=7, num_train=64, num_test=16)
  dataset = data.load(config)
  assert dataset.image_shape == (12, 20, 5) and dataset.num_classes == 7 and len(dataset.split("test")) == 16
  batch = next(iter(data.InputPipeline(config, dataset).train_batches(0)))
  assert batch["image"].shape == (16, 12, 20, 5)


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  """Two small TFDS datasets prepared offline: fixed-shape digits (held in memory) and JPEG pets (streamed)."""
  directory = tmp_path_factory.mktemp("tfds")
  digits = {
    split: [(rng.integers(0, 256, (28, 28, 1), np.uint8), i % 10) for i in range(n)]
    for split, n in (("train", 24), ("test", 8))
    for rng in [np.random.default_rng(n)]
  }
  write_tfds(directory, "JaxcnnTinyDigits", (28, 28, 1), 10, digits)
  rng = np.random.default_rng(40)
  pets = {"train": [(rng.integers(0, 256, (*rng.integers(40, 70, 2).tolist(), 3), np.uint8), i % 2) for i in range(40)]}
  write_tfds(directory, "JaxcnnTinyPets", (None, None, 3), ("cat", "dog"), pets, encoding_format="jpeg")
  return directory


def test_any_tfds_dataset_by_name(tfds_dir):
  dataset = data.load(_config("jaxcnn_tiny_digits", tfds_dir))
  assert isinstance(dataset.split("train"), data.Split) and dataset.image_shape == (28, 28, 1)
  assert len(dataset.split("train")) == 24 and len(dataset.split("test")) == 8 and dataset.num_classes == 10
  with pytest.raises(ValueError, match="unknown dataset 'imagenet9'"):
    data.load(_config("imagenet9"))


def test_streamed_tfds_split_trains_and_evaluates_every_example_once(tfds_dir):
  config = _config(
    "jaxcnn_tiny_pets",
    tfds_dir,
    train_augment="random_sized_crop(32)|flip_lr",
    eval_augment="resize(32)",
    validation_size=10,
    stats_file=str(tfds_dir / "stats.json"),
  )
  (tfds_dir / "stats.json").write_text('{"mean": [0.5, 0.5, 0.5], "std": [0.3, 0.3, 0.3]}')
  dataset = data.load(config)
  assert isinstance(dataset.split("train"), data.TfdsSplit) and len(dataset.split("train")) == 30
  pipeline = data.InputPipeline(config, dataset)
  train_batches = list(pipeline.train_batches(0))
  assert len(train_batches) == 30 // 16 and train_batches[0]["image"].shape == (16, 32, 32, 3)
  np.testing.assert_array_equal(next(iter(pipeline.train_batches(0)))["image"], train_batches[0]["image"])
  evaluation = list(pipeline.eval_batches("validation"))
  assert sum(b["mask"].sum() for b in evaluation) == 10 and len(evaluation) == 1


def _run_python(code: str) -> str:
  """Runs `code` in a fresh interpreter on this checkout (default XLA flags); returns its stdout."""
  result = subprocess.run(
    [sys.executable, "-c", code],
    capture_output=True,
    text=True,
    cwd=REPO,
    env={**os.environ, "PYTHONPATH": REPO, "XLA_FLAGS": ""},
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  return result.stdout


def test_importing_jaxcnn_and_training_without_tensorflow():
  """`pipeline=auto` takes the JAX path where TensorFlow cannot be imported, and nothing imports it."""
  code = """
import sys
sys.modules["tensorflow"] = None  # as on a machine without TensorFlow: `import tensorflow` fails
import importlib.util
importlib.util.find_spec = (lambda f: lambda name, *a: None if name == "tensorflow" else f(name, *a))(
    importlib.util.find_spec)
import numpy as np
import jaxcnn, jaxcnn.train
from jaxcnn import data
from jaxcnn.data import augment
split = data.Split(np.zeros((64, 32, 32, 3), np.uint8), np.zeros(64, np.int32))
batch = next(iter(data.train_batches(split, global_batch=16, seed=0, epoch=0, mean=np.zeros(3), std=np.ones(3),
                                     augment_chain=augment.Chain("resnet_cifar", train=True))))
assert batch["image"].shape == (16, 32, 32, 3), batch["image"].shape
print("ok", "tensorflow" in sys.modules and sys.modules["tensorflow"] is not None)
"""
  assert _run_python(code).strip() == "ok False"


@pytest.mark.slow
def test_an_image_folder_trains_and_evaluates_where_tensorflow_is_not_installed(tmp_path):
  """GPU images often lack TensorFlow: `pipeline=auto` then reads folders with the TF-free file loader."""
  root = write_image_folder(tmp_path / "pets", splits=("train", "test"), per_class=16)
  code = f"""
import sys
sys.modules["tensorflow"] = None  # as on a machine without TensorFlow: `import tensorflow` fails
import importlib.util
importlib.util.find_spec = (lambda f: lambda name, *a: None if name == "tensorflow" else f(name, *a))(
    importlib.util.find_spec)
from jaxcnn import configs, evaluate, train
config = configs.get("lenet5")
config.update(dict(dataset="image_folder", data_dir={str(root)!r}, image_size=32, validation_size=0, num_epochs=2,
                   batch_size=8, eval_batch_size=8, train_augment="resize(36)|random_crop(32)|flip_lr",
                   eval_augment="resize(36)|center_crop(32)"))
record = train.train_and_evaluate(config, {str(tmp_path / "run")!r})
results = evaluate.evaluate_checkpoint(config, {str(tmp_path / "run")!r})
print(record["epoch"], results["num_examples"], "tensorflow" in sys.modules and sys.modules["tensorflow"] is not None)
"""
  assert _run_python(code).strip().splitlines()[-1] == "2 32 False"


def test_training_on_in_memory_data_imports_neither_tensorflow_nor_torch(tiny_data_dir, tmp_path):
  """The default job's start-up: `pipeline=auto` reads in-memory data without TensorFlow, and the TensorBoard
  writer does not pull in torch, though both are installed here."""
  pytest.importorskip("tensorflow")
  code = f"""
import sys
from jaxcnn import configs, train
config = configs.get("lenet5")
config.update(dict(data_dir={str(tiny_data_dir)!r}, validation_size=60, batch_size=32, num_epochs=1))
train.train_and_evaluate(config, {str(tmp_path / "run")!r})
print("imported:", [m for m in ("tensorflow", "torch") if m in sys.modules])
"""
  assert _run_python(code).strip().splitlines()[-1] == "imported: []"
  assert list((tmp_path / "run" / "tensorboard").iterdir())  # the events were still written


def test_multi_view_eval_step_averages_the_softmax_over_views(tiny_config):
  model = models.create("lenet5", num_classes=10)
  strategy = parallel.Pmap()
  host_state = train.create_train_state(tiny_config, model, (28, 28, 1), optim.create(tiny_config, 10))
  state = strategy.put_state(host_state)
  rng = np.random.default_rng(0)
  images = rng.normal(size=(8, 2, 3, 28, 28, 1)).astype(np.float32)
  labels = rng.integers(0, 10, (8, 2)).astype(np.int32)
  mask = np.ones((8, 2), bool)
  p_eval = strategy.compile(functools.partial(inference.eval_step, model.apply), donate_state=False)
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  sums = p_eval(variables, {"image": images, "label": labels, "mask": mask})
  logits = model.apply({"params": host_state.params}, images.reshape(-1, 28, 28, 1))
  probs = np.asarray(jax.nn.softmax(logits)).reshape(16, 3, 10).mean(axis=1)
  expected = -np.log(probs[np.arange(16), labels.reshape(-1)]).sum()
  np.testing.assert_allclose(float(sums["loss"][0]), expected, rtol=1e-5)
  assert float(sums["count"][0]) == 16


@pytest.mark.parametrize("views", [2, 10])
@pytest.mark.parametrize("logit_scale", [1.0, 1e4])
def test_a_multi_view_loss_is_finite_where_every_view_is_confidently_wrong(tiny_config, views, logit_scale):
  """The views' averaged softmax, taken to the log, underflowed to -inf where every view put the true class more
  than ~104 nats below another: one such image made a whole split's validation loss inf. The loss is now the
  exact log-mean-exp, checked against float64 on logits scaled until those gaps are thousands of nats."""
  model = models.create("lenet5", num_classes=10)
  host_state = train.create_train_state(tiny_config, model, (28, 28, 1), optim.create(tiny_config, 10))
  params = jax.tree_util.tree_map(
    lambda w: w * logit_scale if w.ndim == 2 and w.shape[-1] == 10 else w, host_state.params
  )
  rng = np.random.default_rng(1)
  images = rng.normal(size=(8, 1, views, 28, 28, 1)).astype(np.float32)
  labels = rng.integers(0, 10, (8, 1)).astype(np.int32)
  strategy = parallel.Pmap()
  p_eval = strategy.compile(functools.partial(inference.eval_step, model.apply), donate_state=False)
  state = strategy.put_state(host_state.replace(params=params))
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  sums = p_eval(variables, {"image": images, "label": labels, "mask": np.ones((8, 1), bool)})
  logits = np.asarray(model.apply({"params": params}, images.reshape(-1, 28, 28, 1)), np.float64).reshape(8, views, 10)
  exact = scipy.special.logsumexp(scipy.special.log_softmax(logits, -1), axis=1) - np.log(views)
  expected = -exact[np.arange(8), labels[:, 0]].sum()
  if logit_scale > 1:
    assert expected > 8 * 200  # the gaps this test is about
  np.testing.assert_allclose(float(sums["loss"][0]), expected, rtol=1e-4)
