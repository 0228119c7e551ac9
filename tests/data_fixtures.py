"""Tiny datasets in the formats users bring: IDX files, CIFAR pickles and binaries, folders of image files, TFDS
datasets (ImageNet as TFDS prepares it, and small ones of any shape); and the pixels to fill them with."""

import io
import pathlib
import pickle
import tarfile

import numpy as np
from PIL import Image

from jaxcnn.data import idx


def gradient(height: int, width: int, rng=None) -> np.ndarray:
  """uint8 [height, width, 3]: R grows with x squared, G with y squared, B constant: flips, offsets and lighting
  are all readable from the pixels. (rng: unused, for `write_image_folder`'s pixels.)"""
  y, x = np.mgrid[0:height, 0:width] / np.array([[[height - 1]], [[width - 1]]])
  return np.stack([255 * x**2, 255 * y**2, np.full_like(x, 128)], axis=-1).round().astype(np.uint8)


def smooth(height: int, width: int, rng) -> np.ndarray:
  """uint8 [height, width, 3]: random colours blended bilinearly over 16 pixels, which resample like photographs
  (unlike pixel noise)."""
  small = Image.fromarray(rng.integers(0, 256, (height // 16 + 2, width // 16 + 2, 3), np.uint8))
  return np.asarray(small.resize((width, height), Image.BILINEAR))


def write_idx(directory: pathlib.Path, images: np.ndarray, labels: np.ndarray, test=None) -> pathlib.Path:
  """train-* and t10k-* IDX files (gzipped, as distributed): uint8 images [N, 28, 28] and labels [N] for train,
  and `test` ((images, labels)) for t10k, by default the same."""
  directory.mkdir(parents=True, exist_ok=True)
  for prefix, (split_images, split_labels) in (("train", (images, labels)), ("t10k", test or (images, labels))):
    idx.write(directory / f"{prefix}-images-idx3-ubyte.gz", split_images)
    idx.write(directory / f"{prefix}-labels-idx1-ubyte.gz", split_labels)
  return directory


def write_cifar_python(
  root: pathlib.Path, name: str = "cifar10", per_batch: int = 8, seed: int = 0, image=None, class_names=None
) -> pathlib.Path:
  """cifar-10-batches-py (5 train batches + test) or cifar-100-python (train + test), as pickles: random images, or
  every one `image` (uint8 [32, 32, 3]); class names `class_names`, else class0, class1, ..."""
  rng = np.random.default_rng(seed)
  ten = name == "cifar10"
  directory = root / ("cifar-10-batches-py" if ten else "cifar-100-python")
  directory.mkdir(parents=True)
  files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if ten else ["train", "test"]
  key = b"labels" if ten else b"fine_labels"
  for f in files:
    pixels = rng.integers(0, 256, (per_batch, 3072), np.uint8)
    if image is not None:  # rows are the red plane, then green, then blue
      pixels = np.tile(image.transpose(2, 0, 1).reshape(-1), (per_batch, 1))
    batch = {b"data": pixels, key: rng.integers(0, 10 if ten else 100, per_batch).tolist()}
    (directory / f).write_bytes(pickle.dumps(batch, protocol=2))
  meta_key, meta_file = (b"label_names", "batches.meta") if ten else (b"fine_label_names", "meta")
  names = [n.encode() for n in class_names or [f"class{i}" for i in range(10 if ten else 100)]]
  (directory / meta_file).write_bytes(pickle.dumps({meta_key: names}, protocol=2))
  return directory


def write_cifar_binary(root: pathlib.Path, name: str = "cifar100", records: int = 6, seed: int = 0):
  """cifar-10-batches-bin or cifar-100-binary: label byte(s) then 3072 pixel bytes per record."""
  rng = np.random.default_rng(seed)
  ten = name == "cifar10"
  directory = root / ("cifar-10-batches-bin" if ten else "cifar-100-binary")
  directory.mkdir(parents=True)
  files = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"] if ten else ["train.bin", "test.bin"]
  for f in files:
    labels = rng.integers(0, 10 if ten else 100, (records, 1 if ten else 2), np.uint8)
    np.concatenate([labels, rng.integers(0, 256, (records, 3072), np.uint8)], axis=1).tofile(directory / f)
  return directory


def _image(mode: str, size, rng, pixels=None) -> Image.Image:
  height, width = size
  rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8) if pixels is None else pixels(*size, rng))
  if mode == "I;16":
    return Image.fromarray(rng.integers(0, 65536, (height, width)).astype(np.uint16))
  return rgb.convert(mode)


# (file name, Pillow mode, format): every mode and format the folder source promises to read.
MIXED = [
  ("a.jpg", "RGB", "JPEG"),
  ("b.JPEG", "L", "JPEG"),
  ("c.jpeg", "CMYK", "JPEG"),
  ("d.png", "RGBA", "PNG"),
  ("e.PNG", "P", "PNG"),
  ("f.png", "I;16", "PNG"),
  ("g.bmp", "RGB", "BMP"),
  ("h.BMP", "P", "BMP"),
  ("i.bmp", "L", "BMP"),
]


def write_image_folder(
  root: pathlib.Path,
  classes=("cat", "dog"),
  splits=("train",),
  per_class=9,
  seed=0,
  size=None,
  size_range=(30, 60),
  strays=("notes.txt",),
  sizes=None,
  pixels=None,
  files=MIXED,
  quality=75,
) -> pathlib.Path:
  """root[/split]/class/<i><name> for (name, Pillow mode, format) in `files` in turn (every mode and format the
  folder source reads, by default), plus the stray non-image files `strays` in each class folder.

  Sizes: `sizes` (one (height, width) per file of a class, per_class = len(sizes)), else `size`, else random
  heights and widths in `size_range`. Pixels: `pixels(height, width, rng)` (e.g. `gradient`, `smooth`) in RGB, else
  noise. JPEGs at `quality`."""
  rng = np.random.default_rng(seed)
  per_class = len(sizes) if sizes else per_class
  for split in splits:
    base = root / split if split else root
    for name in classes:
      directory = base / name
      directory.mkdir(parents=True)
      for i in range(per_class):
        file_name, mode, fmt = files[i % len(files)]
        hw = sizes[i] if sizes else size or (int(rng.integers(*size_range)), int(rng.integers(*size_range)))
        _image(mode, hw, rng, pixels).save(directory / f"{i}{file_name}", fmt, quality=quality)
      for stray in strays:
        (directory / stray).write_text("not an image")
  return root


def write_tfds(directory: pathlib.Path, class_name: str, image_shape, labels, examples, encoding_format=None):
  """Prepares, offline, a TFDS dataset of `examples` ({split: [(uint8 image, label), ...]}) in directory: images
  of `image_shape` (None where sizes vary) encoded as `encoding_format` (TFDS's default: PNG), labels a number of
  classes or their names. Its name is class_name's (JaxcnnTinyPets -> jaxcnn_tiny_pets), once per process.
  Imports TensorFlow."""
  import tensorflow_datasets as tfds

  classes = {"num_classes": labels} if isinstance(labels, int) else {"names": list(labels)}

  def info(self):
    image = tfds.features.Image(shape=tuple(image_shape), encoding_format=encoding_format)
    features = tfds.features.FeaturesDict({"image": image, "label": tfds.features.ClassLabel(**classes)})
    return tfds.core.DatasetInfo(builder=self, features=features)

  def split_generators(self, dl_manager):
    return {split: self._generate_examples(split) for split in examples}

  def generate_examples(self, split):
    for i, (image, label) in enumerate(examples[split]):
      yield i, {"image": image, "label": label}

  methods = {"VERSION": tfds.core.Version("1.0.0"), "_info": info}
  methods.update(_split_generators=split_generators, _generate_examples=generate_examples)
  builder = type(class_name, (tfds.core.GeneratorBasedBuilder,), methods)
  builder(data_dir=str(directory)).download_and_prepare()
  return directory


def write_imagenet2012_tfds(root: pathlib.Path, num_classes=2, train_per_class=2, num_validation=4, seed=0):
  """ImageNet as a user has it after TFDS prepared it: TFDS's own imagenet2012 builder run on tiny stand-ins
  for the manual downloads (ILSVRC2012_img_train.tar of per-synset tars, ILSVRC2012_img_val.tar of
  ILSVRC2012_val_*.JPEG, labelled by TFDS's list), written to root/imagenet2012/<version>/. Returns root, the
  data_dir to give. Imports TensorFlow."""
  import tensorflow_datasets as tfds

  rng = np.random.default_rng(seed)
  manual = root / "manual"
  manual.mkdir(parents=True)

  def jpeg():
    data = io.BytesIO()
    _image("RGB", (int(rng.integers(60, 120)), int(rng.integers(60, 120))), rng).save(data, "JPEG")
    return data.getvalue()

  def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))

  synsets = ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475")[:num_classes]
  with tarfile.open(manual / "ILSVRC2012_img_train.tar", "w") as train:
    for synset in synsets:
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode="w") as per_synset:
        for i in range(train_per_class):
          add(per_synset, f"{synset}_{i}.JPEG", jpeg())
      add(train, f"{synset}.tar", inner.getvalue())
  with tarfile.open(manual / "ILSVRC2012_img_val.tar", "w") as validation:
    for i in range(1, num_validation + 1):
      add(validation, f"ILSVRC2012_val_{i:08d}.JPEG", jpeg())
  data_dir = root / "tfds"
  builder = tfds.builder("imagenet2012", data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  return data_dir


# torchvision's ResNets: (block, blocks per stage); a bottleneck block widens its output 4 times.
_TORCHVISION_RESNETS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}


def write_torchvision_resnet(path: pathlib.Path, depth: int, num_classes: int = 1000, seed: int = 0) -> pathlib.Path:
  """A .pth file as `torch.save(torchvision.models.resnetDEPTH().state_dict(), path)` writes it (torchvision's
  key names, shapes and dtypes, num_batches_tracked included), without needing torchvision. Weights are random
  at the scale of trained ones: convs with variance 1/fan_in, BatchNorm statistics of unit variance, and each
  residual branch's last BatchNorm scaled down, so the features stay of order one through every block."""
  import torch

  generator = torch.Generator().manual_seed(seed)
  block, stages = _TORCHVISION_RESNETS[depth]
  expansion = 4 if block == "bottleneck" else 1
  state = {}

  def conv(name, out, inputs, k):
    state[f"{name}.weight"] = torch.randn(out, inputs, k, k, generator=generator) / (inputs * k * k) ** 0.5

  def norm(name, channels, scale=1.0):
    state[f"{name}.weight"] = scale * torch.empty(channels).uniform_(0.5, 1.5, generator=generator)
    state[f"{name}.bias"] = 0.1 * torch.randn(channels, generator=generator)
    state[f"{name}.running_mean"] = 0.1 * torch.randn(channels, generator=generator)
    state[f"{name}.running_var"] = torch.empty(channels).uniform_(0.8, 1.2, generator=generator)
    state[f"{name}.num_batches_tracked"] = torch.tensor(1000, dtype=torch.long)

  conv("conv1", 64, 3, 7)
  norm("bn1", 64)
  inputs = 64
  for stage, (blocks, width) in enumerate(zip(stages, (64, 128, 256, 512)), start=1):
    for b in range(blocks):
      name = f"layer{stage}.{b}"
      shapes = (
        [(width, inputs, 1), (width, width, 3), (width * expansion, width, 1)]
        if block == "bottleneck"
        else [(width, inputs, 3), (width, width, 3)]
      )
      for i, (out, into, k) in enumerate(shapes, start=1):
        conv(f"{name}.conv{i}", out, into, k)
        norm(f"{name}.bn{i}", out, 0.2 if i == len(shapes) else 1.0)
      if b == 0 and (stage > 1 or inputs != width * expansion):
        conv(f"{name}.downsample.0", width * expansion, inputs, 1)
        norm(f"{name}.downsample.1", width * expansion)
      inputs = width * expansion
  state["fc.weight"] = torch.randn(num_classes, inputs, generator=generator) / inputs**0.5
  state["fc.bias"] = torch.zeros(num_classes)
  torch.save(state, path)
  return path
