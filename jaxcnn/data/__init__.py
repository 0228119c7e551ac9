"""Input pipelines: sources (in memory or files) -> augmentation plan -> tf.data or JAX -> [devices, per_device, ...]."""

from jaxcnn.data.pipeline import (InputPipeline, batch_layout, channel_stats, eval_batches, num_batches, shard,
                                  train_batches)
from jaxcnn.data.sources import Dataset, FileSplit, Split, TfdsSplit, load

__all__ = ["Dataset", "Split", "FileSplit", "TfdsSplit", "load", "InputPipeline", "batch_layout", "channel_stats",
           "shard", "train_batches", "eval_batches", "num_batches"]
