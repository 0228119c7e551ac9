"""Input pipelines: sources (arrays in memory) -> tf.data assembly -> [devices, per_device, ...] batches."""

from jaxcnn.data.pipeline import batch_layout, channel_stats, eval_batches, num_batches, train_batches
from jaxcnn.data.sources import Dataset, Split, load

__all__ = ["Dataset", "Split", "load", "batch_layout", "channel_stats", "train_batches", "eval_batches", "num_batches"]
