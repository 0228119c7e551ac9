"""What the model sees and what it learned, as PNG grids: a training batch, the eval views of one image, the most
confident mistakes and the first convolution's kernels; and the confusion matrix of an eval (CSV and PNG).

Training writes WORKDIR/input_batch.png (the first training batch of the run, augmentation included, normalisation
undone, each tile captioned with its class name), WORKDIR/eval_views.png (every view `eval_augment` makes of one
image: 1 for a centre crop, 10 for AlexNet's ten crops, 150 for VGG's multi-scale grid) and run_summary.json
(parameters and multiply-adds, for `jaxcnn.compare`), the images also to TensorBoard: `after_first_step`, on the
report thread (`reporting.in_background`) once the first step is dispatched, never on the step loop.
`--mode=eval` writes mistakes_<split>.png (the most confident wrong predictions, kept by `ConfidentMistakes` as
the eval runs), filters.png (`first_conv_kernel`) and confusion_<split>.csv/.png (`write_confusion`).

Every picture is a `Grid`: tiles (float [N, H, W, C] in [0, 1]) with a caption each. `Grid.mosaic()` lays them
out in one array (what TensorBoard receives); `Grid.figure()` draws that array with matplotlib, each caption as
a text above its tile.
"""

import csv
import dataclasses
import json
import math
import pathlib

import jax
import numpy as np

from jaxcnn import reporting, summary

MAX_BATCH_TILES = 64  # input_batch.png shows at most this many images of the batch (8 x 8)
NUM_MISTAKES = 16  # mistakes_<split>.png: the most confident wrong predictions kept


@dataclasses.dataclass
class Grid:
  """Tiles in rows of `columns`, `pad` pixels apart, a band of `caption_lines` text lines above each tile."""

  tiles: np.ndarray  # float [N, H, W, C] in [0, 1], C = 1 or 3
  captions: list[str]
  columns: int
  title: str = ""
  caption_lines: int = 1
  cell_inches: float = 1.1  # each tile's width in the figure
  pad: int = 2

  @property
  def rows(self) -> int:
    return -(-len(self.tiles) // self.columns)

  @property
  def band(self) -> int:
    """Pixels of caption space above each tile: 0.14 inch per 7-point line at the figure's scale."""
    if not any(self.captions):
      return 0
    pixels_per_inch = (self.tiles.shape[2] + self.pad) / self.cell_inches
    return math.ceil(self.caption_lines * 0.14 * pixels_per_inch) + 1

  def origin(self, i: int) -> tuple[int, int]:
    """(top, left) of tile i in the mosaic."""
    height, width = self.tiles.shape[1:3]
    row, column = divmod(i, self.columns)
    return self.pad + row * (self.band + height + self.pad) + self.band, self.pad + column * (width + self.pad)

  def mosaic(self) -> np.ndarray:
    """float [rows * (band + H + pad) + pad, columns * (W + pad) + pad, C]: the tiles in place on white."""
    n, height, width, channels = self.tiles.shape
    out = np.ones(
      (self.pad + self.rows * (self.band + height + self.pad), self.pad + self.columns * (width + self.pad), channels),
      np.float32,
    )
    for i in range(n):
      top, left = self.origin(i)
      out[top : top + height, left : left + width] = self.tiles[i]
    return out

  def figure(self):
    """The matplotlib figure: the mosaic as one image, the captions as texts above their tiles (in tile order)."""
    plt = reporting.pyplot()
    mosaic = self.mosaic()
    pixels_per_inch = (self.tiles.shape[2] + self.pad) / self.cell_inches
    title_inches = 0.35 if self.title else 0.0
    width, height = mosaic.shape[1] / pixels_per_inch, mosaic.shape[0] / pixels_per_inch
    fig = plt.figure(figsize=(max(width, 3.0, 0.08 * len(self.title)), height + title_inches))  # the title fits
    ax = fig.add_axes([0, 0, 1, height / (height + title_inches)])
    small = self.tiles.shape[1] < 64  # few pixels (MNIST, kernels): shown as blocks, not blurred
    if mosaic.shape[-1] == 1:
      ax.imshow(mosaic[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest" if small else "antialiased")
    else:
      ax.imshow(mosaic, interpolation="nearest" if small else "antialiased")
    ax.set_axis_off()
    for i, caption in enumerate(self.captions):
      if caption:
        top, left = self.origin(i)
        ax.text(left + self.tiles.shape[2] / 2, top - 0.5, caption, ha="center", va="bottom", fontsize=7)
    if self.title:
      fig.suptitle(self.title, fontsize=9, y=1 - 0.1 * title_inches / (height + title_inches))
    return fig

  def save(self, path) -> pathlib.Path:
    plt = reporting.pyplot()
    fig = self.figure()
    fig.savefig(path, dpi=100, facecolor="white")
    plt.close(fig)
    return pathlib.Path(path)


def unnormalise(images, mean, std) -> np.ndarray:
  """Model inputs back to pixels in [0, 1]: images * std + mean, clipped (a view's zero padding stays black)."""
  return np.clip(np.asarray(images, np.float32) * np.float32(std) + np.float32(mean), 0.0, 1.0)


def batch_grid(images, labels, class_names, mean, std, limit: int = MAX_BATCH_TILES) -> Grid:
  """The first `limit` images of a batch [N, H, W, C] in batch order, normalisation undone, captioned with the
  class names of their labels."""
  images, labels = np.asarray(images)[:limit], np.asarray(labels)[:limit]
  captions = [class_names[int(label)] for label in labels]
  title = f"first training batch: {len(images)} images as the model sees them (augmented; normalisation undone)"
  return Grid(unnormalise(images, mean, std), captions, min(8, len(images)), title)


def views_grid(views, mean, std, class_name: str, spec: str) -> Grid:
  """Every eval view of one image ([V, H, W, C], or [H, W, C] where the chain makes one view)."""
  views = np.asarray(views)
  tiles = unnormalise(views if views.ndim == 4 else views[None], mean, std)
  captions = [f"view {i + 1}" for i in range(len(tiles))] if len(tiles) > 1 else ["the one view"]
  title = f"{class_name}: {len(tiles)} eval view{'s' * (len(tiles) > 1)} ({spec or 'the whole image'})"
  return Grid(tiles, captions, min(10, len(tiles)), title)


def mistakes_grid(images, labels, predicted, probabilities, class_names, mean, std, split: str = "") -> Grid:
  """Wrong predictions in the order given (`ConfidentMistakes.selected`: most confident first); `images` [N, (V,)
  H, W, C] of which the first view is shown."""
  images = np.asarray(images)
  images = images[:, 0] if images.ndim == 5 else images
  captions = [
    f"true {class_names[int(t)]}\npred {class_names[int(p)]} {q:.0%}"
    for t, p, q in zip(labels, predicted, probabilities)
  ]
  title = f"the {len(images)} most confident mistakes on {split}" if split else ""
  return Grid(unnormalise(images, mean, std), captions, min(8, max(len(images), 1)), title, caption_lines=2)


class ConfidentMistakes:
  """A running selection of the `n` wrong predictions with the highest probability over an eval: at most `n` kept,
  whatever the split's size. `add` takes each eval step's per-example outputs (inference.eval_step's `examples`:
  predicted, probability, label, mask, in the split's order)."""

  def __init__(self, n: int = NUM_MISTAKES):
    self.n, self.seen = n, 0
    self.kept = {k: np.zeros(0, dtype) for k, dtype in _FIELDS.items()}

  def add(self, examples: dict) -> None:
    wrong = np.asarray(examples["mask"], bool) & (examples["predicted"] != examples["label"])
    new = {k: np.asarray(examples[k])[wrong].astype(_FIELDS[k]) for k in ("predicted", "probability", "label")}
    new["index"] = (self.seen + np.flatnonzero(wrong)).astype(np.int64)
    self.seen += len(wrong)
    both = {k: np.concatenate([self.kept[k], new[k]]) for k in _FIELDS}
    order = np.lexsort((both["index"], -both["probability"]))[: self.n]  # most confident first, then split order
    self.kept = {k: v[order] for k, v in both.items()}

  def __len__(self) -> int:
    return len(self.kept["index"])


_FIELDS = {"index": np.int64, "predicted": np.int32, "probability": np.float32, "label": np.int32}


def eval_views(input_pipeline, split, indices) -> np.ndarray:
  """The eval views [n, (V,) H, W, C] (normalised, as the model sees them) of `split`'s examples `indices`, made
  by this process alone: each process takes its columns of a global batch, so the indices are tiled once per
  process and this process's share is all of them."""
  indices = np.asarray(indices, np.int64)
  subset = split.subset(np.tile(indices, jax.process_count()))
  batch = next(iter(input_pipeline.eval_batches(subset, len(subset))))
  return np.asarray(batch["image"])[: len(indices)]


def first_conv_kernel(model, params, image_shape) -> tuple[str, np.ndarray] | None:
  """("path/of/layer", kernel [kh, kw, in, out]) of the model's first layer, when that is a convolution, else None.

  "First" is the first layer called in the forward pass that has a `kernel` (`summary.layers`: the model's
  calls in order, traced on shapes only), not the first in the params tree, whose keys are sorted by name. A
  model that starts with a dense layer (the MLP) has none."""
  for layer in summary.layers(model, image_shape)[0]:
    subtree = params
    for name in layer.path:
      subtree = subtree.get(name, {}) if hasattr(subtree, "get") else {}
    if layer.leaf and hasattr(subtree, "get") and "kernel" in subtree:
      kernel = np.asarray(subtree["kernel"], np.float32)
      return ("/".join(layer.path), kernel) if kernel.ndim == 4 else None
  return None


def filter_grid(kernel, name: str = "") -> Grid:
  """One tile per output channel of a [kh, kw, in, out] kernel, each min-max normalised on its own (AlexNet's
  Figure 3): in colour for 3 input channels, in gray for 1 (other counts: the mean over the input channels)."""
  kernel = np.asarray(kernel, np.float32)
  tiles = np.moveaxis(kernel, -1, 0)  # [out, kh, kw, in]
  if tiles.shape[-1] not in (1, 3):
    tiles = tiles.mean(axis=-1, keepdims=True)
  low = tiles.min(axis=(1, 2, 3), keepdims=True)
  high = tiles.max(axis=(1, 2, 3), keepdims=True)
  tiles = (tiles - low) / np.maximum(high - low, 1e-12)
  columns = min(16, len(tiles)) if len(tiles) > 8 else len(tiles)
  title = f"{name}: {len(tiles)} kernels {kernel.shape[0]}x{kernel.shape[1]}x{kernel.shape[2]}" if name else ""
  return Grid(tiles, [""] * len(tiles), columns, title, cell_inches=0.45, pad=1)


def after_first_step(run, batch: dict, step: int, tensorboard) -> None:
  """For the report thread once a run's first step is dispatched: run_summary.json, input_batch.png (`batch`, the
  first one) and eval_views.png (the first image of the validation split, else of the split --mode=eval reads),
  both also to TensorBoard."""
  workdir, names = run.workdir, run.dataset.class_names
  totals = summary.totals(run.model, run.input.image_shape)
  run_summary = {
    "model": run.config.model,
    "dataset": run.config.dataset,
    "params": totals["params"],
    "macs": totals["macs"],
    "input_shape": list(run.input.image_shape),
    "num_classes": run.dataset.num_classes,
    "train_examples": len(run.dataset.split("train")),
  }
  (workdir / "run_summary.json").write_text(json.dumps(run_summary, indent=2) + "\n")
  grid = batch_grid(batch["image"], batch["label"], names, run.input.mean, run.input.std)
  grid.save(workdir / "input_batch.png")
  tensorboard.images(step, "input_batch", grid.mosaic()[None])
  split_name = (run.eval_splits or ["train"])[0]
  split = run.dataset.split(split_name)
  if hasattr(split, "subset"):  # a streamed TFDS split cannot be read by index
    views = eval_views(run.input, split, [0])[0]
    name = f"{split_name} image 1 ({names[int(split.labels[0])]})"
    grid = views_grid(views, run.input.mean, run.input.std, name, run.input.eval_chain.spec)
    grid.save(workdir / "eval_views.png")
    tensorboard.images(step, "eval_views", grid.mosaic()[None])


def write_mistakes(restored, split_name: str, mistakes: ConfidentMistakes, path) -> pathlib.Path | None:
  """mistakes_<split>.png of an `inference.Inference` eval: the selected examples' eval views read again by index
  (a streamed TFDS split, which cannot be, gets none)."""
  split = restored.dataset.split(split_name)
  if not len(mistakes) or not hasattr(split, "subset"):
    return None
  kept, input_pipeline = mistakes.kept, restored.input
  images = eval_views(input_pipeline, split, kept["index"])
  grid = mistakes_grid(
    images,
    kept["label"],
    kept["predicted"],
    kept["probability"],
    restored.dataset.class_names,
    input_pipeline.mean,
    input_pipeline.std,
    split_name,
  )
  return grid.save(path)


def write_filters(restored, path) -> pathlib.Path | None:
  """filters.png of an `inference.Inference`: the first convolution's kernels (`first_conv_kernel`); none for a
  model that starts otherwise."""
  found = first_conv_kernel(restored.model, restored.variables["params"], restored.input.image_shape)
  return filter_grid(found[1], found[0]).save(path) if found else None


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
