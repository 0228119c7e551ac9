"""Dataset statistics: per-channel mean and std, and the RGB covariance's eigenvalues and eigenvectors
that AlexNet's PCA lighting uses (Krizhevsky et al. 2012, Section 4.1), all for pixels in [0, 1].

In-memory datasets get theirs computed at start-up (seconds). For folders of files, compute them once and
store them beside the data:

  python -m jaxcnn.data.stats --dataset=image_folder --data_dir=/data/imagenet [--max_images=50000]

which writes DATA_DIR/jaxcnn_stats.json (or --stats_file); training reads it from there (or from
`config.stats_file`) and otherwise estimates mean and std from a sample of files, with a warning.
"""

import json
import pathlib

import numpy as np
from absl import app, flags, logging

from jaxcnn.data import folder
from jaxcnn.data.sources import Dataset, FileSplit, Split

STATS_FILE = "jaxcnn_stats.json"
# Images read when a folder has no statistics file: enough for the mean and std to three decimals.
STARTUP_SAMPLE = 500


class _Moments:
  """Running sums of pixels and their outer products, in float64."""

  def __init__(self, channels: int):
    self.count, self.sum, self.outer = 0, np.zeros(channels), np.zeros((channels, channels))

  def add(self, pixels: np.ndarray):
    pixels = pixels.reshape(-1, pixels.shape[-1]).astype(np.float64) / 255.0
    self.count += len(pixels)
    self.sum += pixels.sum(axis=0)
    self.outer += pixels.T @ pixels

  def result(self, num_images: int) -> dict:
    mean = self.sum / self.count
    covariance = self.outer / self.count - np.outer(mean, mean)
    stats = {
      "mean": mean.tolist(),
      "std": np.sqrt(np.diag(covariance)).tolist(),
      "num_images": num_images,
      "num_pixels": self.count,
    }
    if len(mean) == 3:
      eigval, eigvec = np.linalg.eigh(covariance)  # ascending; AlexNet's order is descending
      stats["pca_eigval"] = eigval[::-1].tolist()
      stats["pca_eigvec"] = eigvec[:, ::-1].tolist()  # columns are the eigenvectors
    return stats


def _read_rgb(path: str) -> np.ndarray:
  try:
    return folder.decode_rgb(path, draft=(256, 256))  # JPEG: decoded at reduced size, enough for colour statistics
  except (OSError, SyntaxError, ValueError) as e:
    raise folder.BadImageError(f"{path}: cannot decode image ({e})") from None


def compute(split, max_images: int | None = None, seed: int = 0) -> dict:
  """Statistics of a split (in memory: all of it; files: max_images of them, drawn with `seed`)."""
  if isinstance(split, Split):
    moments = _Moments(split.images.shape[-1])
    for start in range(0, len(split), 4096):  # chunks, so that float64 copies stay small
      moments.add(split.images[start : start + 4096])
    return moments.result(len(split))
  if not isinstance(split, FileSplit):
    raise ValueError("statistics of a streamed TFDS split are not supported; give mean/std in the stats file")
  chosen = np.arange(len(split))
  if max_images and max_images < len(split):
    chosen = np.sort(np.random.default_rng(seed).choice(len(split), max_images, replace=False))
  moments = _Moments(3)
  for i in chosen:
    moments.add(_read_rgb(split.paths[i]))
  return moments.result(len(chosen))


def stats_path(config, dataset: Dataset) -> pathlib.Path | None:
  if config.get("stats_file"):
    return pathlib.Path(config.stats_file)
  return None if dataset.root is None else dataset.root / STATS_FILE


def for_dataset(config, dataset: Dataset) -> dict:
  """The training split's statistics: from the stats file when there is one, else computed (or sampled).

  `origin` says which: "file", "computed" (all of an in-memory training split) or "sampled" (a folder's
  start-up sample, good for mean and std, too small to stand for the dataset's PCA).
  """
  path = stats_path(config, dataset)
  if path is not None and path.is_file():
    stats = json.loads(path.read_text())
    missing = {"mean", "std"} - set(stats)
    if missing:
      raise ValueError(f"{path}: statistics file lacks {', '.join(sorted(missing))}")
    return {**stats, "origin": "file", "path": str(path)}
  train = dataset.split("train")
  if isinstance(train, FileSplit):
    logging.warning(
      "No statistics file %s: estimating mean and std from %d training images (run `python -m "
      "jaxcnn.data.stats` to compute and store them once)",
      path,
      min(STARTUP_SAMPLE, len(train)),
    )
    return {**compute(train, STARTUP_SAMPLE), "origin": "sampled"}
  return {**compute(train), "origin": "computed"}


FLAGS = flags.FLAGS


def main(argv):
  del argv
  from jaxcnn.configs import default
  from jaxcnn.data import sources

  config = default.get_config()
  config.dataset, config.data_dir, config.skip_bad_images = FLAGS.dataset, FLAGS.data_dir, FLAGS.skip_bad_images
  config.validation_size, config.stats_file = FLAGS.validation_size, FLAGS.stats_file
  dataset = sources.load(config)
  stats = compute(dataset.split("train"), FLAGS.max_images)
  path = stats_path(config, dataset)
  if path is None:
    raise app.UsageError("this dataset has no folder of its own: give --stats_file")
  path.write_text(json.dumps(stats, indent=2) + "\n")
  print(f"{config.dataset}: statistics of {stats['num_images']} training images written to {path}")
  print(json.dumps({k: stats[k] for k in ("mean", "std", "pca_eigval") if k in stats}))


if __name__ == "__main__":
  flags.DEFINE_string("dataset", "image_folder", "Dataset name, as --config.dataset.")
  flags.DEFINE_string("data_dir", "", "As --config.data_dir.")
  flags.DEFINE_string("stats_file", "", "Where to write (default: DATA_DIR/jaxcnn_stats.json).")
  flags.DEFINE_integer("validation_size", 0, "As --config.validation_size: statistics are of the rest of train.")
  flags.DEFINE_integer("max_images", 0, "Read at most this many training images (0 = all).")
  flags.DEFINE_bool("skip_bad_images", False, "As --config.skip_bad_images.")
  app.run(main)
