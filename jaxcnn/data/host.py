"""The TF-free pipeline: a host loader whose batches are augmented on a device in JAX.

In-memory datasets: each step gathers this process's uint8 images and their plan rows on the host (cheap
copies, a quarter of the float bytes to transfer) and one jitted, vmapped JAX function cuts, resizes,
mirrors, lights and normalises the flat batch; the parallel strategy then lays it out over its devices
like any other batch. A chain without ops (whole images, normalised) is computed in NumPy on the host
instead: the batch then reaches the train step as a host array, like a tf.data batch, with no device
program of its own to dispatch and no device-to-device copy when the strategy splits it over several
devices.

Image files (folders): images differ in size, so the host cuts each view's window and resizes it to the
model's input (`folder.cut_file`: Pillow decodes, OpenCV resizes, both releasing the GIL, so a thread per core
works in parallel, the next batch while the current one trains); the device then mirrors, lights and normalises
them. The window's pixels are sampled bilinearly at half-pixel centres with zeros outside the image, as tf.data
and the in-memory path do (no antialiasing when shrinking, as in `tf.image.resize`); the decoders differ in a
few units of JPEG chroma.
"""

import concurrent.futures
import functools
import os
from collections.abc import Iterator

import jax
import numpy as np

from jaxcnn.data import folder, jax_ops


@functools.lru_cache(maxsize=8)
def _compiled(make_fn, chain, shape_args: tuple, mean: tuple, std: tuple):
  """jit(vmap(make_fn(chain, *shape_args, mean, std))): one compiled function per chain, shape and statistics,
  reused across epochs (`jax_ops.augment_fn` for in-memory images, `jax_ops.finish_fn` for cut file views)."""
  return jax.jit(jax.vmap(make_fn(chain, *shape_args, np.float32(mean), np.float32(std))))


def _on_device(make_fn, chain, mean, std, *shape_args):
  return _compiled(make_fn, chain, shape_args, tuple(np.float32(mean).tolist()), tuple(np.float32(std).tolist()))


def _assemble(split, indices, plan, mask, pixels, augment) -> Iterator[dict]:
  """[local_batch, ...] batches for rows `indices` [steps, local_batch]: `augment(pixels of the step, its plan
  rows)` for `pixels` (one uint8 array per step), the labels and the mask."""
  columns = plan.as_dict()
  for step, (rows, images) in enumerate(zip(indices, pixels)):
    batch = {"image": augment(images, {k: v[step] for k, v in columns.items()}), "label": split.labels[rows]}
    if mask is not None:
      batch["mask"] = mask[step]
    yield batch


def batches(split, indices, plan, mask, chain, mean, std, out_hw) -> Iterator[dict]:
  """[local_batch, ...] batches of an in-memory `split` for rows `indices` [steps, local_batch] with their plan
  rows."""
  if chain.is_identity:
    mean, std = np.float32(mean), np.float32(std)
    augment = lambda images, rows: (images.astype(np.float32) / np.float32(255.0) - mean) / std
  else:
    augment = _on_device(jax_ops.augment_fn, chain, mean, std, tuple(out_hw))
  return _assemble(split, indices, plan, mask, (split.images[rows] for rows in indices), augment)


@functools.lru_cache(maxsize=1)
def _decoders() -> concurrent.futures.ThreadPoolExecutor:
  """One decoding thread per core, shared by every file pipeline of the process."""
  return concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="jaxcnn-decode")


def _decoded_views(split, indices, windows, cut) -> Iterator[np.ndarray]:
  """uint8 [local_batch, views, h, w, 3] per step, `cut(i, windows)` giving example i's views, the next step's
  examples decoding while the current one is used; a file that fails to decode stops it with an error naming it."""
  pool = _decoders()

  def submit(step):
    return [pool.submit(cut, i, windows[step][k]) for k, i in enumerate(indices[step])]

  pending = submit(0) if len(indices) else []
  try:
    for step, rows in enumerate(indices):
      decoding, pending = pending, submit(step + 1) if step + 1 < len(indices) else []
      try:
        yield np.stack([future.result() for future in decoding])
      except (OSError, SyntaxError, ValueError) as e:
        raise folder.undecodable(split.paths[rows], e) from None
  finally:
    for future in pending:  # a consumer that stops early (one batch to compile with) leaves no work behind
      future.cancel()


def file_batches(split, indices, plan, mask, chain, mean, std, out_hw) -> Iterator[dict]:
  """[local_batch, ...] batches of a FileSplit for rows `indices` [steps, local_batch]: each view cut and resized
  on the host (`folder.cut_file`), mirrored, lit and normalised on the device."""
  views = _decoded_views(
    split, indices, plan.windows, lambda i, windows: folder.cut_file(split.paths[i], windows, out_hw)
  )
  return _assemble(split, indices, plan, mask, views, _on_device(jax_ops.finish_fn, chain, mean, std))


def cached_views(split, indices, windows, out_hw, rows) -> Iterator[np.ndarray]:
  """uint8 [local_batch, views, h, w, 3] per step: each view cut from its row of a `cache.RowCache` on the
  decoding threads (a slice where no resize is left): what the host hands the device for a cached batch."""
  # Rows not yet filled are decoded (their head stored) on the decoding threads, as `file_batches` decodes files.
  return _decoded_views(
    split, indices, windows, lambda i, view_windows: folder.cut_image(rows.get(i), view_windows, out_hw)
  )


def cached_batches(split, indices, plan, mask, chain, mean, std, out_hw, rows) -> Iterator[dict]:
  """`file_batches` from a `cache.RowCache`: `plan` is the tail's, in the rows' pixels; the views
  (`cached_views`) are mirrored, lit and normalised on the device."""
  views = cached_views(split, indices, plan.windows, out_hw, rows)
  return _assemble(split, indices, plan, mask, views, _on_device(jax_ops.finish_fn, chain, mean, std))
