"""Input pipelines: sources (in memory or files) -> augmentation plan -> tf.data or JAX -> [local_batch, ...]."""

from jaxcnn.data.pipeline import (
  InputPipeline,
  channel_stats,
  eval_batches,
  local_batch_size,
  num_batches,
  shard,
  train_batches,
)
from jaxcnn.data.sources import Dataset, FileSplit, Split, TfdsSplit, load

__all__ = [
  "Dataset",
  "Split",
  "FileSplit",
  "TfdsSplit",
  "load",
  "InputPipeline",
  "local_batch_size",
  "channel_stats",
  "shard",
  "train_batches",
  "eval_batches",
  "num_batches",
]
