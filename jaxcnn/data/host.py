"""The TF-free pipeline: a host loader whose batches are augmented on a device in JAX.

In-memory datasets: each step gathers this process's uint8 images and their plan rows on the host (cheap
copies, a quarter of the float bytes to transfer) and one jitted, vmapped JAX function cuts, resizes,
mirrors, lights and normalises the flat batch; the parallel strategy then lays it out over its devices
like any other batch. A chain without ops (whole images, normalised) is computed in NumPy on the host
instead: the batch then reaches the train step as a host array, like a tf.data batch, with no device
program of its own to dispatch and no device-to-device copy when the strategy splits it over several
devices.

Image files (folders): images differ in size, so the host cuts each view's window and resizes it to the
model's input (Pillow: decoding and resampling release the GIL, so a thread per core decodes in parallel,
the next batch while the current one trains); the device then mirrors, lights and normalises them. The
window's pixels are sampled bilinearly at half-pixel centres with zeros outside the image, as tf.data and
the in-memory path do (`Image.transform` with an extent: no antialiasing when shrinking, as in
`tf.image.resize`); the decoders differ in a few units of JPEG chroma.
"""

import concurrent.futures
import functools
import os
from collections.abc import Iterator

import jax
import numpy as np
from PIL import Image

from jaxcnn.data import folder, jax_ops


@functools.lru_cache(maxsize=8)
def _augmenter(chain, out_hw: tuple, mean: tuple, std: tuple):
  """One compiled function per chain and shape, reused across epochs."""
  return jax.jit(jax.vmap(jax_ops.augment_fn(chain, out_hw, np.float32(mean), np.float32(std))))


def batches(split, indices, plan, mask, chain, mean, std, out_hw) -> Iterator[dict]:
  """[local_batch, ...] batches of `split` for rows `indices` [steps, local_batch] with their plan rows."""
  if chain.is_identity:
    mean, std = np.float32(mean), np.float32(std)
    augment = lambda images, rows: (images.astype(np.float32) / np.float32(255.0) - mean) / std
  else:
    augment = _augmenter(chain, tuple(out_hw), tuple(np.float32(mean).tolist()), tuple(np.float32(std).tolist()))
  columns = plan.as_dict()
  for step, rows in enumerate(indices):
    batch = {
      "image": augment(split.images[rows], {k: v[step] for k, v in columns.items()}),
      "label": split.labels[rows],
    }
    if mask is not None:
      batch["mask"] = mask[step]
    yield batch


@functools.lru_cache(maxsize=8)
def _finisher(chain, mean: tuple, std: tuple):
  return jax.jit(jax.vmap(jax_ops.finish_fn(chain, np.float32(mean), np.float32(std))))


@functools.lru_cache(maxsize=1)
def _decoders() -> concurrent.futures.ThreadPoolExecutor:
  """One decoding thread per core, shared by every file pipeline of the process."""
  return concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="jaxcnn-decode")


def cut_views(path: str, windows: np.ndarray, out_hw: tuple) -> np.ndarray:
  """uint8 [views, h, w, 3]: each (top, left, height, width) window of the image file, resized to out_hw."""
  height, width = out_hw
  with Image.open(path) as opened:
    image = folder.rgb(opened)
  views = []
  for top, left, window_h, window_w in windows.tolist():
    view = np.asarray(image.crop((left, top, left + window_w, top + window_h)))  # zeros outside the image
    if (window_h, window_w) != (height, width):
      # Edge pixels repeated once around the window: bilinear samples near its border then take the border's
      # values (as tf.image.resize and jax_ops clamp), not a blend with Pillow's fill colour.
      framed = Image.fromarray(np.pad(view, ((1, 1), (1, 1), (0, 0)), mode="edge"))
      extent = (1, 1, 1 + window_w, 1 + window_h)
      view = np.asarray(framed.transform((width, height), Image.Transform.EXTENT, extent, Image.Resampling.BILINEAR))
    views.append(view)
  return np.stack(views)


def file_batches(split, indices, plan, mask, chain, mean, std, out_hw) -> Iterator[dict]:
  """[local_batch, ...] batches of a FileSplit for rows `indices` [steps, local_batch]; the next batch's files
  are decoded while the current one is used. A file that fails to decode stops it with an error naming it."""
  finish = _finisher(chain, tuple(np.float32(mean).tolist()), tuple(np.float32(std).tolist()))
  columns = plan.as_dict()
  pool = _decoders()

  def submit(step):
    windows = columns["window"][step]
    return [pool.submit(cut_views, split.paths[i], windows[k], tuple(out_hw)) for k, i in enumerate(indices[step])]

  pending = submit(0) if len(indices) else []
  try:
    for step, rows in enumerate(indices):
      decoding, pending = pending, submit(step + 1) if step + 1 < len(indices) else []
      try:
        views = np.stack([future.result() for future in decoding])
      except (OSError, SyntaxError, ValueError) as e:
        raise folder.undecodable(split.paths[rows], e) from None
      batch = {"image": finish(views, {k: v[step] for k, v in columns.items()}), "label": split.labels[rows]}
      if mask is not None:
        batch["mask"] = mask[step]
      yield batch
  finally:
    for future in pending:  # a consumer that stops early (one batch to compile with) leaves no work behind
      future.cancel()
