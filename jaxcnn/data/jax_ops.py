"""The pixel work of an augmentation plan in JAX, per example, for the TF-free pipeline (jit + vmap).

Mirrors tf_ops.py: cut the window (zeros outside the image), resize it bilinearly with half-pixel
centres (what `tf.image.resize` does), mirror it, then the chain's photometric ops and normalisation.
"""

import jax
import jax.numpy as jnp


def _axis_samples(out_size: int, start, size):
  """Source indices and weights along one axis: half-pixel centres, clamped to the window's edges."""
  pos = start + (jnp.arange(out_size) + 0.5) * size / out_size - 0.5
  pos = jnp.clip(pos, start, start + size - 1)
  low = jnp.floor(pos)
  high = jnp.minimum(low + 1, start + size - 1)
  return low.astype(jnp.int32), high.astype(jnp.int32), (pos - low).astype(jnp.float32)


def _resample(image, axis: int, out_size: int, start, size):
  low, high, frac = _axis_samples(out_size, start, size)
  shape = [1, 1, 1]
  shape[axis] = out_size
  frac = frac.reshape(shape)

  def take(indices):
    # Indices outside the image give zeros: the padding of pad(n) and of windows past the border.
    inside = (indices >= 0) & (indices < image.shape[axis])
    values = jnp.take(image, jnp.clip(indices, 0, image.shape[axis] - 1), axis=axis)
    return values * inside.reshape(shape)

  return take(low) * (1 - frac) + take(high) * frac


def view(image, window, flip, out_hw: tuple[int, int]):
  """One view: image [H, W, C] on 0..255, window int32 (top, left, height, width), flip bool."""
  image = image.astype(jnp.float32)
  image = _resample(image, 0, out_hw[0], window[0], window[2])
  image = _resample(image, 1, out_hw[1], window[1], window[3])
  return jnp.where(flip, image[:, ::-1], image)


def _finish(chain, views, row, mean, std):
  """The chain's photometric ops and normalisation of views [views, h, w, C] on 0..255."""
  views = chain.apply_photometric(views, row, lambda x: jnp.mean(x, axis=(-3, -2, -1), keepdims=True))
  views = (views / 255.0 - mean) / std
  return views if chain.num_views else views[0]


def augment_fn(chain, out_hw, mean, std):
  """example(image uint8 [H, W, C], plan row) -> float32 [(views,) h, w, C], normalised."""
  mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)

  def example(image, row):
    if chain.is_identity:
      return (image.astype(jnp.float32) / 255.0 - mean) / std
    views = jax.vmap(lambda w, f: view(image, w, f, out_hw))(row["window"], row["flip"])
    return _finish(chain, views, row, mean, std)

  return example


def finish_fn(chain, mean, std):
  """example(views uint8 [views, h, w, C] already cut and resized (the file loader does that on the host),
  plan row) -> float32 [(views,) h, w, C]: the mirroring, photometric ops and normalisation of `augment_fn`."""
  mean, std = jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32)

  def example(views, row):
    views = views.astype(jnp.float32)
    views = jnp.where(row["flip"][:, None, None, None], views[:, :, ::-1], views)
    return _finish(chain, views, row, mean, std)

  return example
