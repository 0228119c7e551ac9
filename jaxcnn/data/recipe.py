"""A paper's augmentation recipe fitted to the data in hand: defined by the model's input, not a dataset name.

A preset (`alexnet`, `vgg`, `googlenet`, `resnet`, `resnet_cifar` for training; `center`, `ten_crop`,
`alexnet`, `vgg`, `googlenet`, `resnet` for evaluation; augment.py) becomes an op chain for the source:

- `image_size` > 0, or images of varying size (folders, streamed TFDS splits): the paper's chain with its
  pixel counts scaled to a crop of `image_size` (224, the papers' crop, when 0). Any image can take it:
  the chain resizes before it crops, so CIFAR upscaled to 64 or 227 and a folder of photos get the paper's
  crops, flips and lighting.
- fixed-size images smaller than the paper's crop at their native size (28x28 Fashion-MNIST, 32x32 CIFAR
  with `image_size` 0): the small-image form of the same recipe, the one He et al. 2015 (Section 4.2)
  used on CIFAR: zero padding of an eighth of the side, a random crop of the native size, a flip, and the
  recipe's photometric ops where the images are colour; evaluation on the whole image.

Where the images are grayscale the preset's colour ops (PCA lighting, colour jitter) are left out. PCA
lighting uses the dataset's own eigenvectors when its statistics cover the whole training split (a
statistics file from `python -m jaxcnn.data.stats`, or an in-memory split computed at start-up) and
ImageNet's (AlexNet's) otherwise. Every such choice is a line of `Recipe.notes`, printed at start-up.
A chain the user writes out is applied exactly as written; one that cannot apply is an error.
"""

import dataclasses

from jaxcnn.data import augment

_COLOUR_OPS = ("pca_lighting", "color_jitter")


@dataclasses.dataclass(frozen=True)
class Recipe:
  train: augment.Chain
  eval: augment.Chain
  notes: tuple[str, ...]  # how the presets were fitted to the data, one line each


def _op_name(text: str) -> str:
  return text.split("(")[0].strip()


def lighting_origin(stats: dict) -> str:
  """'dataset' when the statistics hold PCA eigenvectors of the whole training split, else 'imagenet'."""
  return "dataset" if "pca_eigval" in stats and stats.get("origin") in ("file", "computed") else "imagenet"


def _fit(spec, *, train: bool, image_size: int, source_hw: tuple, channels: int, stats: dict):
  """(op string, notes) of `spec` for this data; a chain that is not a preset's name is returned as given."""
  kind = "training" if train else "evaluation"
  name = spec.strip() if isinstance(spec, str) else None
  if name is None or augment.preset(name, train=train) is None:
    return spec, []
  notes = []
  fixed = None not in source_hw
  if not image_size and fixed and min(source_hw) < augment.paper_crop(name):
    height, width = source_hw
    if train:
      texts = [f"pad({max(1, round(min(height, width) / 8))})", f"random_crop({height}, {width})", "flip_lr"]
      texts += [t for t in augment.preset(name, train=True).split("|") if _op_name(t) in _COLOUR_OPS]
      notes.append(
        f"training preset {name!r}: small-image form (pad, crop, flip), as the {height}x{width} images "
        f"are smaller than the paper's {augment.paper_crop(name)}-pixel crop (--config.image_size upscales "
        "them for the paper's chain)"
      )
    else:
      texts = []
      notes.append(f"evaluation preset {name!r}: small-image form (the whole {height}x{width} image)")
  else:
    texts = augment.preset(name, train=train, size=image_size or None).split("|")
  texts = [t for t in texts if t.strip()]
  if channels != 3 and any(_op_name(t) in _COLOUR_OPS for t in texts):
    dropped = sorted({_op_name(t) for t in texts if _op_name(t) in _COLOUR_OPS})
    notes.append(f"{kind} preset {name!r}: without {', '.join(dropped)}, as the images have {channels} channel(s)")
    texts = [t for t in texts if _op_name(t) not in _COLOUR_OPS]
  origin = lighting_origin(stats)
  texts = [f"pca_lighting(0.1, '{origin}')" if _op_name(t) == "pca_lighting" else t for t in texts]
  return "|".join(texts), notes


def _lighting_notes(chain: augment.Chain, stats: dict) -> list[str]:
  sources = {op.source for op in chain.ops if isinstance(op, augment.PcaLighting)}
  if "dataset" in sources:
    where = {"file": "its statistics file", "computed": "all its training images"}[stats["origin"]]
    return [f"PCA lighting: the dataset's own eigenvalues and eigenvectors (from {where})"]
  if "imagenet" in sources:
    return [
      (
        "PCA lighting: ImageNet's eigenvalues and eigenvectors (AlexNet's; run `python -m jaxcnn.data.stats` "
        "for the dataset's own)"
      )
    ]
  return []


def fit(train_spec, eval_spec, *, image_size: int, source_shape: tuple, stats: dict) -> Recipe:
  """The training and evaluation chains for images of `source_shape` (H, W, C; None where sizes vary)."""
  source_hw, channels = tuple(source_shape[:2]), source_shape[2]
  chains, notes = [], []
  for spec, train in ((train_spec, True), (eval_spec, False)):
    text, fitted = _fit(spec, train=train, image_size=image_size, source_hw=source_hw, channels=channels, stats=stats)
    chain = augment.Chain(text, train=train, image_size=image_size, stats=stats)
    chain.check_channels(channels)
    chains.append(chain)
    notes += fitted
  notes += _lighting_notes(chains[0], stats)
  return Recipe(chains[0], chains[1], tuple(notes))
