"""Image files named on the command line (`--mode=predict --images=...`), as a split to predict on.

Files are decoded by `folder.decode_rgb`, as the image-folder pipelines decode theirs: a file predicted on and the
same file trained on give the same pixels.
"""

import pathlib

import numpy as np
from PIL import Image

from jaxcnn.data import folder, jax_ops, sources


def paths_of(images: str) -> list[pathlib.Path]:
  """Files named (comma-separated), or the image files inside the directories named."""
  paths = []
  for item in filter(None, (part.strip() for part in images.split(","))):
    path = pathlib.Path(item)
    if path.is_dir():
      paths += sorted(p for p in path.rglob("*") if p.suffix.lower() in folder.EXTENSIONS)
    elif path.is_file():
      paths.append(path)
    else:
      raise FileNotFoundError(f"no such image file or folder: {path}")
  if not paths:
    raise ValueError(f"no images in {images!r}")
  return paths


def read_resized(paths: list[pathlib.Path], shape: tuple) -> np.ndarray:
  """uint8 [N, H, W, C] of image files in the training images' channels, prepared as evaluation prepares the
  dataset's own images: pixels of the training size pass unchanged; another size is resized with the pipelines'
  bilinear arithmetic (half-pixel centres, no antialiasing: `jax_ops.view`), not Pillow's antialiasing filter."""
  height, width, channels = shape
  grey = {1: True, 3: False}[channels]
  images = []
  for path in paths:
    try:
      pixels = folder.decode_rgb(path)
    except (OSError, SyntaxError, ValueError) as e:
      raise ValueError(f"{path}: cannot read image ({e})") from None
    if grey:  # Pillow's RGB to L weights (ITU-R 601): a greyscale file comes back unchanged
      pixels = np.asarray(Image.fromarray(pixels).convert("L"))[..., None]
    if pixels.shape[:2] != (height, width):
      resized = jax_ops.view(pixels, np.array([0, 0, *pixels.shape[:2]], np.int32), False, (height, width))
      pixels = np.clip(np.round(np.asarray(resized)), 0, 255).astype(np.uint8)
    images.append(pixels)
  return np.stack(images)


def prediction_split(paths: list[pathlib.Path], train_shape: tuple) -> sources.Split | sources.FileSplit:
  """Image files as a split to predict on (labels 0): decoded to the training images' shape, or, for file
  datasets (no fixed shape), left to the eval views to size."""
  if None in train_shape:
    sizes = []
    for path in paths:
      with Image.open(path) as image:  # the header only: the eval pipeline decodes the files
        sizes.append(image.size[::-1])
    return sources.FileSplit(
      np.array([str(p) for p in paths], object),
      np.zeros(len(paths), np.int32),
      np.array(sizes, np.int32),
      np.ones(len(paths), bool),
    )
  return sources.Split(read_resized(paths, train_shape), np.zeros(len(paths), np.int32))
