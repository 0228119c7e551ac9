"""`--mode=eval` and `--mode=predict`: what a checkpoint does on a whole split, or on image files.

Both restore only the weights of a checkpoint (the latest, or `--step`) through `inference.Inference`:
no optimizer, no training run. Eval evaluates every example of `config.eval_split` once (the last batch
padded and masked) with the views of `config.eval_augment` (centre crop, AlexNet's ten crops, VGG's
multi-scale grid), with the raw or the EMA weights, and writes `eval_results.json`, the per-class
accuracies, the confusion matrix (CSV and PNG), the most confident mistakes (mistakes_<split>.png) and the first
convolution's kernels (filters.png; `visualize`).
"""

import csv
import json
import pathlib

import numpy as np
from PIL import Image

from jaxcnn import inference, reporting, visualize
from jaxcnn.data import jax_ops, sources
from jaxcnn.watchdog import Watchdog


def evaluate_checkpoint(config, workdir, step: int | None = None) -> dict:
  """Evaluates a checkpoint on `config.eval_split`; returns (and writes) eval_results.json's dict:
  split, step, num_examples, loss, top-1/top-5 accuracy and error, per-class accuracy."""
  split = config.eval_split
  with Watchdog.from_config(config) as watchdog:  # the restore waits on other processes too
    restored = inference.Inference(config, workdir, step, splits=(split,))
    mistakes = visualize.ConfidentMistakes()  # the most confident wrong predictions, kept as the steps complete
    metrics = restored.evaluate(split, watchdog, reporting.import_pyplot_in_background, mistakes.add)  # for the PNGs
  expected = len(restored.dataset.split(split))
  if metrics["eval_num_examples"] != expected:
    raise RuntimeError(f"evaluated {metrics['eval_num_examples']} examples of the {expected} in split {split!r}")
  confusion = metrics["eval_confusion"]
  per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
  class_names = restored.dataset.class_names
  results = {
    "split": split,
    "step": restored.step,
    "num_examples": metrics["eval_num_examples"],
    "loss": metrics["eval_loss"],
    "top1_accuracy": metrics["eval_top1_accuracy"],
    "top5_accuracy": metrics["eval_top5_accuracy"],
    "top1_error": 1.0 - metrics["eval_top1_accuracy"],
    "top5_error": 1.0 - metrics["eval_top5_accuracy"],
    "weights": config.eval_weights,
    "views": config.eval_augment or "as trained (no augmentation)",
    "per_class_accuracy": dict(zip(class_names, per_class.round(6).tolist())),
    "model": config.model,
    "dataset": config.dataset,
    "checkpoint_dir": str(restored.checkpoint_dir),
  }
  if reporting.is_reporter():
    workdir = pathlib.Path(workdir)
    (workdir / "eval_results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_confusion(confusion, class_names, workdir / f"confusion_{split}")
    visualize.write_mistakes(restored, split, mistakes, workdir / f"mistakes_{split}.png")
    visualize.write_filters(restored, workdir / "filters.png")
    print(
      f"{config.model} on {config.dataset}/{split} at step {results['step']} ({config.eval_weights} weights): "
      f"{results['num_examples']} images, top-1 {results['top1_accuracy']:.2%}, "
      f"top-5 {results['top5_accuracy']:.2%}, loss {results['loss']:.4f}",
      flush=True,
    )
  return results


def write_confusion(confusion: np.ndarray, class_names, stem: pathlib.Path) -> None:
  """STEM.csv (counts, rows = true class) and STEM.png (row-normalised heat map)."""
  with open(f"{stem}.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["true \\ predicted", *class_names])
    for name, row in zip(class_names, confusion):
      writer.writerow([name, *row.tolist()])
  plt = reporting.pyplot()
  rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
  size = min(4 + 0.45 * len(class_names), 30)
  fig, ax = plt.subplots(figsize=(size, size))
  ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
  if len(class_names) <= 30:
    ax.set_xticks(range(len(class_names)), class_names, rotation=90)
    ax.set_yticks(range(len(class_names)), class_names)
    for (i, j), count in np.ndenumerate(confusion):
      ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color="white" if rates[i, j] > 0.5 else "black")
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  fig.tight_layout()
  fig.savefig(f"{stem}.png", dpi=100)
  plt.close(fig)


def _read_images(paths: list[pathlib.Path], shape: tuple) -> np.ndarray:
  """uint8 [N, H, W, C] of image files in the training images' channels, prepared as evaluation prepares the
  dataset's own images: pixels of the training size pass unchanged; another size is resized with the pipelines'
  bilinear arithmetic (half-pixel centres, no antialiasing: `jax_ops.view`), not Pillow's antialiasing filter."""
  height, width, channels = shape
  mode = {1: "L", 3: "RGB"}[channels]
  images = []
  for path in paths:
    try:
      with Image.open(path) as opened:
        pixels = np.asarray(opened.convert(mode), np.uint8).reshape(opened.height, opened.width, channels)
    except (OSError, ValueError) as e:
      raise ValueError(f"{path}: cannot read image ({e})") from None
    if pixels.shape[:2] != (height, width):
      resized = jax_ops.view(pixels, np.array([0, 0, *pixels.shape[:2]], np.int32), False, (height, width))
      pixels = np.clip(np.round(np.asarray(resized)), 0, 255).astype(np.uint8)
    images.append(pixels)
  return np.stack(images)


def _image_paths(images: str) -> list[pathlib.Path]:
  """Files named (comma-separated), or the image files inside the directories named."""
  paths = []
  for item in filter(None, (part.strip() for part in images.split(","))):
    path = pathlib.Path(item)
    if path.is_dir():
      paths += sorted(p for p in path.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"})
    elif path.is_file():
      paths.append(path)
    else:
      raise FileNotFoundError(f"no such image file or folder: {path}")
  if not paths:
    raise ValueError(f"no images in {images!r}")
  return paths


def _image_split(paths: list[pathlib.Path], train_shape: tuple) -> sources.Split | sources.FileSplit:
  """Image files as a split to predict on (labels 0): decoded to the training images' shape, or, for file
  datasets (no fixed shape), left to the eval views to size."""
  if None in train_shape:
    return sources.FileSplit(
      np.array([str(p) for p in paths], object),
      np.zeros(len(paths), np.int32),
      np.array([Image.open(p).size[::-1] for p in paths], np.int32),
      np.ones(len(paths), bool),
    )
  return sources.Split(_read_images(paths, train_shape), np.zeros(len(paths), np.int32))


def predict(config, workdir, images: str, step: int | None = None, top_k: int = 5) -> list[dict]:
  """Top-k classes with probabilities for image files; printed as a table, written to predictions.json."""
  paths = _image_paths(images)
  with Watchdog.from_config(config) as watchdog:  # the restore waits on other processes too
    restored = inference.Inference(config, workdir, step)
    probabilities = restored.probabilities(_image_split(paths, restored.dataset.image_shape), watchdog)
  class_names = restored.dataset.class_names
  k = min(top_k, probabilities.shape[-1])
  results = []
  for path, p in zip(paths, probabilities):
    top = np.argsort(-p)[:k]
    results.append(
      {"image": str(path), "top": [{"class": class_names[c], "index": int(c), "probability": float(p[c])} for c in top]}
    )
  if reporting.is_reporter():
    pathlib.Path(workdir, "predictions.json").write_text(json.dumps(results, indent=2) + "\n")
    for result in results:
      ranked = "  ".join(f"{t['class']} {t['probability']:.1%}" for t in result["top"])
      print(f"{result['image']}: {ranked}", flush=True)
  return results
