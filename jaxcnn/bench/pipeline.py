"""Input pipeline throughput beside the train step it feeds.

  python -m jaxcnn.bench.pipeline [--num_jpegs=2000] [--batch_size=128] [--batches=15]

Measures images/s of (1) the AlexNet train pipeline (resize_short 256, centre 256, random 227 crop, flip,
PCA lighting) over a folder of generated ~400x350 JPEGs, (2) the ResNet CIFAR pipeline (pad 4, random 32
crop, flip) in memory, each through tf.data (where TensorFlow is installed; the crop fused with the JPEG
decode) and through the TF-free path (`pipeline=jax`: Pillow on one thread per core for files, then JAX),
and (3) the train steps they feed (AlexNet at 227, ResNet-20, LeNet-5), measured as `python -m
jaxcnn.bench` measures them (`jaxcnn.bench.step.JaxStep`), in this process.
"""

import importlib.util
import itertools
import pathlib
import tempfile
import time

import jax
import numpy as np
from absl import app, flags
from PIL import Image

from jaxcnn import compile_cache, configs, data, kernels
from jaxcnn.bench import step as bench_step

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 128, "Global batch size.", lower_bound=1)
flags.DEFINE_integer("num_jpegs", 2000, "JPEG files generated for the folder pipeline.")
flags.DEFINE_integer("batches", 15, "Timed batches (after two warm-up batches).", lower_bound=1)


def write_jpegs(root: pathlib.Path, num_images: int, size=(350, 400), classes=2, seed=0):
  """Smooth random RGB JPEGs (they compress like photographs, unlike pixel noise)."""
  rng = np.random.default_rng(seed)
  height, width = size
  for c in range(classes):
    (root / f"class{c}").mkdir(parents=True, exist_ok=True)
  for i in range(num_images):
    small = Image.fromarray(rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), np.uint8))
    small.resize((width, height), Image.BILINEAR).save(root / f"class{i % classes}" / f"{i}.jpg", quality=90)


def _rate(batches, batch_size: int, steps: int) -> float:
  """Images per second over `steps` batches, after two warm-up batches (compilation, tf.data start-up)."""
  iterator = iter(batches)
  for _ in range(2):
    jax.block_until_ready(next(iterator)["image"])
  start = time.perf_counter()
  for _ in range(steps):
    jax.block_until_ready(next(iterator)["image"])
  return steps * batch_size / (time.perf_counter() - start)


def _pipeline_rate(config, steps: int) -> float:
  pipeline = data.InputPipeline(config, data.load(config))
  epochs = itertools.chain.from_iterable(pipeline.train_batches(epoch) for epoch in itertools.count())
  return _rate(epochs, config.batch_size, steps)


def _train_step_rate(model_name: str, image_size: int, batch_size: int, steps: int) -> float:
  """`python -m jaxcnn.bench`'s measurement of the train step alone (synthetic batch on the device)."""
  config = bench_step.bench_config(model_name, batch_size, "float32", "pmap", image_size, "synthetic")
  step = bench_step.JaxStep(config, "step")
  step.run(2)
  return steps * batch_size / step.run(steps)


def main(argv):
  del argv
  print(kernels.enable(), flush=True)  # before the backend starts, as training and jaxcnn.bench do
  compile_cache.enable()
  batch, steps = FLAGS.batch_size, FLAGS.batches
  # tf.data where TensorFlow is installed; the TF-free loader ("jax") always.
  pipelines = ("tfdata", "jax") if importlib.util.find_spec("tensorflow") else ("jax",)
  print(f"{jax.device_count()} {jax.devices()[0].platform} device(s), batch {batch}, {steps} timed batches")
  with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp) / "jpegs"
    start = time.perf_counter()
    write_jpegs(root, FLAGS.num_jpegs)
    print(f"wrote {FLAGS.num_jpegs} JPEGs of 400x350 in {time.perf_counter() - start:.1f}s")
    (root / "stats.json").write_text('{"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}')
    config = configs.get("lenet5")
    config.update(
      dataset="image_folder",
      data_dir=str(root),
      validation_size=0,
      batch_size=batch,
      train_augment="alexnet",
      image_size=227,
      stats_file=str(root / "stats.json"),
    )
    rows = []
    for pipeline in pipelines:
      config.pipeline = pipeline
      rows.append((f"AlexNet pipeline, JPEG folder, {pipeline}", _pipeline_rate(config, steps)))
  config = configs.get("lenet5")
  config.update(dataset="synthetic", validation_size=0, batch_size=batch, train_augment="resnet_cifar")
  config.synthetic.update(image_shape=(32, 32, 3), num_train=50 * batch)
  for pipeline in pipelines:
    config.pipeline = pipeline
    rows.append((f"ResNet CIFAR pipeline, in memory, {pipeline}", _pipeline_rate(config, steps)))
  for name, size in (("alexnet", 227), ("resnet20", 32), ("lenet5", 28)):
    rows.append((f"train_step {name} {size}x{size}", _train_step_rate(name, size, batch, steps)))
  for label, rate in rows:
    print(f"{label:55s} {rate:10.0f} images/s")


if __name__ == "__main__":
  app.run(main)
