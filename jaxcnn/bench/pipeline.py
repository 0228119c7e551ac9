"""Input pipeline throughput beside the train step it feeds.

  python -m jaxcnn.bench.pipeline --config=NAME --config.data_dir=DIR [--config.FIELD=...] [--json=FILE]
  python -m jaxcnn.bench.pipeline [--num_jpegs=2000] [--batch_size=128] [--batches=15]

With `--config` (any field overridable as in training; `dataset` defaults to image_folder when `data_dir` is
given): that config's training pipeline on that folder, first pass (every head decoded into a fresh decode-once
cache in a temporary directory, data/cache.py) and cached (the rows read back, only the random tail applied),
the host's share of each (the first pass's: files decoded, heads stored in another fresh cache and views cut;
the cached one's: rows cut; both to uint8 views, before the device mirrors, lights and normalises them: on a GPU
host the device's part runs on the GPU, so this is what the host's cores must sustain), the cores used, and the
config's train step on this machine (synthetic batches, as `python -m jaxcnn.bench` times it); `--json` writes
`first_pass_images_per_sec`, `first_pass_host_images_per_sec`, `cached_images_per_sec`,
`cached_host_images_per_sec`, `cores` and the rest as one object. Rates are over whole batches after the first
(compilation), at most `--batches` per pass.

Without `--config`:

Measures images/s of (1) the AlexNet train pipeline (resize_short 256, centre 256, random 227 crop, flip,
PCA lighting) over a folder of generated ~400x350 JPEGs, (2) the ResNet CIFAR pipeline (pad 4, random 32
crop, flip) in memory, each through tf.data (where TensorFlow is installed; the crop fused with the JPEG
decode) and through the TF-free path (`pipeline=jax`: Pillow on one thread per core for files, then JAX),
and (3) the train steps they feed (AlexNet at 227, ResNet-20, LeNet-5), measured as `python -m
jaxcnn.bench` measures them (`jaxcnn.bench.step.JaxStep`), in this process.
"""

import importlib.util
import itertools
import json
import os
import pathlib
import shutil
import tempfile
import time

import jax
import numpy as np
from absl import app, flags
from PIL import Image

from jaxcnn import compile_cache, configs, data, fast_forms
from jaxcnn.bench import step as bench_step

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 128, "Global batch size.", lower_bound=1)
flags.DEFINE_integer("num_jpegs", 2000, "JPEG files generated for the folder pipeline.")
flags.DEFINE_integer("batches", 15, "Timed batches (after two warm-up batches).", lower_bound=1)
flags.DEFINE_string("json", "", "With --config: write the measurements to this file as one JSON object.")
flags.DEFINE_integer("step_batches", 3, "With --config: timed train steps (0 = do not time the step).", lower_bound=0)
_CONFIG = None  # --config's holder, defined when run as a program (configs.define_flag)


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


def cores() -> int:
  return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _timed(images, limit: int) -> tuple[float, int]:
  """(images/s, batches timed) over up to `limit` arrays of `images` ([batch, ...] each: a batch's images, or the
  host's views of them) after the first."""
  iterator = iter(images)
  first = next(iterator, None)
  if first is None:
    return float("nan"), 0
  jax.block_until_ready(first)
  count, start = 0, time.perf_counter()
  for batch in itertools.islice(iterator, limit):
    jax.block_until_ready(batch)
    count += len(batch)
  seconds = time.perf_counter() - start
  return (count / seconds if count else float("nan")), count // max(len(first), 1)


def images_of(batches):
  """The image arrays of `batches` (what `_timed` times)."""
  return (batch["image"] for batch in batches)


def _first_pass_host_rate(config, pipeline, cache_dir: pathlib.Path, batches: int) -> float:
  """images/s of the host's share of a first pass: epoch 0's views (`cached_train_views`) from another fresh row
  cache at cache_dir, each head decoded and stored as the views are cut, without the device's part (as the
  cached host share is measured). The pipeline's dataset and statistics are reused: the same split and chains."""
  config = config.copy_and_resolve_references()
  config.data_cache = str(cache_dir)
  fresh = data.InputPipeline(config, pipeline.dataset, pipeline.stats)
  return _timed(fresh.cached_train_views(0), batches)[0]


def measure_folder(config, batches: int, step_batches: int) -> dict:
  """First-pass and cached images/s of config's training pipeline, the cores, and its train step's images/s."""
  from jaxcnn.data import pack

  if config.data_dir and config.dataset != "image_folder":
    config.dataset = "image_folder"
  config.pipeline = "jax"
  with tempfile.TemporaryDirectory(prefix="jaxcnn-pipeline-bench-") as tmp:
    config.data_cache = tmp  # a fresh cache: the first pass decodes every head, the user's cache is left alone
    pipeline = data.InputPipeline(config, data.load(config))
    for line in pipeline.describe():
      print(line, flush=True)
    rows = pipeline.row_cache()
    first_pass_host = float("nan")
    if rows:  # the host's share of a first pass (decode, head stored, views cut), on a second fresh cache, first:
      # measured after the whole pass below, it came after the gigabytes of rows that pass stored (VGG-16: 2 GB)
      # and ran slower than that pass (VGG-16: 314 against 497 images/s, 2-core VM)
      host_cache = pathlib.Path(tmp) / "host"
      first_pass_host = _first_pass_host_rate(config, pipeline, host_cache, batches)
      shutil.rmtree(host_cache)
    first_pass, first_batches = _timed(images_of(pipeline.train_batches(0)), batches)
    if rows is not None:
      pack.fill(rows)  # the rows epoch 0 left out (its incomplete last batch)
    cached, cached_batches = _timed(images_of(pipeline.train_batches(1)), batches) if rows else (float("nan"), 0)
    # The host's share of a cached batch (rows cut to uint8 views); the device's mirroring, lighting and
    # normalisation, which the rate above includes, run on the accelerator of a GPU host.
    cached_host, _ = _timed(pipeline.cached_train_views(1), batches) if rows else (float("nan"), 0)
    result = {
      "config": config.get("name", "") or config.model,
      "data_dir": str(config.data_dir),
      "train_augment": pipeline.train_chain.spec,
      "cache_head": rows.head.spec if rows else None,
      "cache_bytes": rows.disk_bytes() if rows else 0,
      "batch_size": config.batch_size,
      "first_pass_images_per_sec": first_pass,
      "first_pass_batches": first_batches,
      "cached_images_per_sec": cached,
      "cached_batches": cached_batches,
      "cached_host_images_per_sec": cached_host,
      "first_pass_host_images_per_sec": first_pass_host,
      "cores": cores(),
    }
  if step_batches:
    size = pipeline.image_shape[0]
    result["train_step_images_per_sec"] = _train_step_rate(config.model, size, config.batch_size, step_batches)
    result["train_step"] = f"{config.model} {size}x{size}, batch {config.batch_size}, {jax.devices()[0].platform}"
  return result


def main_folder(config) -> None:
  result = measure_folder(config, FLAGS.batches, FLAGS.step_batches)
  per_core = lambda rate: f"{rate:10.0f} images/s ({rate / result['cores']:.0f} per core)"
  print(f"cores used: {result['cores']}")
  print(f"first pass (decode + head + tail):  {per_core(result['first_pass_images_per_sec'])}")
  print(f"first pass, the host's share:       {per_core(result['first_pass_host_images_per_sec'])}")
  print(f"cached (rows + tail):               {per_core(result['cached_images_per_sec'])}")
  print(f"cached, the host's share (views):   {per_core(result['cached_host_images_per_sec'])}")
  if "train_step_images_per_sec" in result:
    print(f"train step ({result['train_step']}): {result['train_step_images_per_sec']:10.0f} images/s")
  if FLAGS.json:
    pathlib.Path(FLAGS.json).write_text(json.dumps(result, indent=1) + "\n")


def main(argv):
  del argv
  if _CONFIG is not None and FLAGS["config"].present:
    print(fast_forms.enable(), flush=True)
    compile_cache.enable()
    return main_folder(_CONFIG.value)
  print(fast_forms.enable(), flush=True)  # before the backend starts, as training and jaxcnn.bench do
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
      data_cache="",  # every epoch decodes, as these rows have always measured
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
  _CONFIG = configs.define_flag()
  app.run(main)
