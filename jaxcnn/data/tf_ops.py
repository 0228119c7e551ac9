"""The pixel work of an augmentation plan in TensorFlow, per example, inside tf.data.

Mirrors jax_ops.py. A JPEG whose single view lies inside the image is decoded only inside the view's
window (`tf.image.decode_and_crop_jpeg`): AlexNet-style crops then skip most of the decoding work.
"""

from jaxcnn.data import folder, tf_import


def _crop_with_zeros(image, window):
  """image[top:top+height, left:left+width], zeros where the window leaves the image."""
  tf = tf_import.tensorflow()
  top, left, height, width = window[0], window[1], window[2], window[3]
  size = tf.shape(image)
  y0, x0 = tf.clip_by_value(top, 0, size[0]), tf.clip_by_value(left, 0, size[1])
  y1 = tf.clip_by_value(top + height, y0, size[0])
  x1 = tf.clip_by_value(left + width, x0, size[1])
  inner = image[y0:y1, x0:x1]
  return tf.pad(inner, [[y0 - top, top + height - y1], [x0 - left, left + width - x1], [0, 0]])


def _finish(crop, window, flip, out_hw):
  """Resize a cut-out window to out_hw (when it differs) and mirror it (when flip)."""
  tf = tf_import.tensorflow()
  crop = tf.cast(crop, tf.float32)
  same = tf.logical_and(window[2] == out_hw[0], window[3] == out_hw[1])
  crop = tf.cond(same, lambda: crop, lambda: tf.image.resize(crop, out_hw, method="bilinear"))
  crop = tf.cond(flip, lambda: tf.reverse(crop, axis=[1]), lambda: crop)
  return tf.ensure_shape(crop, (*out_hw, None))


def views_of_image(image, plan, out_hw):
  """[views, h, w, C] float32 from a decoded image [H, W, C]."""
  tf = tf_import.tensorflow()
  return tf.map_fn(
    lambda wf: _finish(_crop_with_zeros(image, wf[0]), wf[0], wf[1], out_hw),
    (plan["window"], plan["flip"]),
    fn_output_signature=tf.float32,
  )


def _pil_decode(data):
  """RGB uint8 through Pillow (`folder.decode_rgb`), for the files TensorFlow decodes wrongly (palette BMP)."""
  return folder.decode_rgb(bytes(data))


def decode(data, use_pil):
  """Any supported image file's bytes -> uint8 [H, W, 3]."""
  tf = tf_import.tensorflow()

  def pil():
    image = tf.numpy_function(_pil_decode, [data], tf.uint8, stateful=False)
    return tf.ensure_shape(image, (None, None, 3))

  def native():
    return tf.ensure_shape(tf.io.decode_image(data, channels=3, expand_animations=False), (None, None, 3))

  return tf.cond(use_pil, pil, native)


def views_of_file(data, use_pil, plan, out_hw, num_views: int):
  """[views, h, w, 3] from an encoded file; a JPEG with one view inside the image decodes only its window."""
  tf = tf_import.tensorflow()
  if num_views != 1:
    return views_of_image(decode(data, use_pil), plan, out_hw)
  window, flip = plan["window"][0], plan["flip"][0]

  def fused():
    crop = tf.image.decode_and_crop_jpeg(data, window, channels=3)
    return _finish(crop, window, flip, out_hw)[None]

  def whole():
    return views_of_image(decode(data, use_pil), plan, out_hw)

  is_jpeg = tf.logical_and(tf.io.is_jpeg(data), tf.logical_not(use_pil))
  inside = tf.cond(is_jpeg, lambda: _inside(tf.image.extract_jpeg_shape(data), window), lambda: False)
  return tf.cond(inside, fused, whole)


def _inside(shape, window):
  tf = tf_import.tensorflow()
  return tf.reduce_all(
    [window[0] >= 0, window[1] >= 0, window[0] + window[2] <= shape[0], window[1] + window[3] <= shape[1]]
  )


def finish_example(views, plan, chain, mean, std):
  """Photometric ops and normalisation of [views, h, w, C]; drops the views axis for single-view chains."""
  tf = tf_import.tensorflow()
  views = chain.apply_photometric(views, plan, lambda x: tf.reduce_mean(x, axis=[-3, -2, -1], keepdims=True))
  views = (views / 255.0 - mean) / std
  return views if chain.num_views else views[0]
