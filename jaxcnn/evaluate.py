"""`--mode=eval` and `--mode=predict`: what a checkpoint does on a whole split, or on image files.

Both restore only the weights of a checkpoint (the latest, or `--step`) through `inference.Inference`:
no optimizer, no training run. Eval evaluates every example of `config.eval_split` once (the last batch
padded and masked) with the views of `config.eval_augment` (centre crop, AlexNet's ten crops, VGG's
multi-scale grid), with the raw or the EMA weights, and writes `eval_results.json`, the per-class
accuracies, the confusion matrix (CSV and PNG), the most confident mistakes (mistakes_<split>.png) and the first
convolution's kernels (filters.png; `visualize`).
"""

import json
import pathlib

import numpy as np

from jaxcnn import inference, reporting, visualize
from jaxcnn.data import images as image_files
from jaxcnn.watchdog import Watchdog


def evaluate_checkpoint(config, workdir, step: int | None = None) -> dict:
  """Evaluates a checkpoint on `config.eval_split`; returns (and writes) eval_results.json's dict:
  split, step, num_examples, loss, top-1/top-5 accuracy and error, per-class accuracy."""
  split = config.eval_split
  with Watchdog.from_config(config) as watchdog:  # the restore waits on other processes too
    restored = inference.Inference(config, workdir, step, splits=(split,))
    mistakes = visualize.ConfidentMistakes()  # the most confident wrong predictions, kept as the steps complete
    metrics = restored.split_metrics(split, watchdog, reporting.import_pyplot_in_background, mistakes.add)  # for PNGs
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
    visualize.write_confusion(confusion, class_names, workdir / f"confusion_{split}")
    visualize.write_mistakes(restored, split, mistakes, workdir / f"mistakes_{split}.png")
    visualize.write_filters(restored, workdir / "filters.png")
    print(
      f"{config.model} on {config.dataset}/{split} at step {results['step']} ({config.eval_weights} weights): "
      f"{results['num_examples']} images, top-1 {results['top1_accuracy']:.2%}, "
      f"top-5 {results['top5_accuracy']:.2%}, loss {results['loss']:.4f}",
      flush=True,
    )
  return results


def predict(config, workdir, images: str, step: int | None = None, top_k: int = 5) -> list[dict]:
  """Top-k classes with probabilities for image files; printed as a table, written to predictions.json."""
  paths = image_files.paths_of(images)
  with Watchdog.from_config(config) as watchdog:  # the restore waits on other processes too
    restored = inference.Inference(config, workdir, step)
    probabilities = restored.probabilities(image_files.prediction_split(paths, restored.dataset.image_shape), watchdog)
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
