"""The one place TensorFlow is imported, so that it never takes a GPU from JAX."""

import functools
import os


@functools.cache
def tensorflow():
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf

  # TensorFlow's GPU build would otherwise reserve the accelerator's memory that JAX needs.
  tf.config.set_visible_devices([], "GPU")
  return tf


@functools.cache
def tensorflow_datasets():
  tensorflow()
  import tensorflow_datasets as tfds

  return tfds
