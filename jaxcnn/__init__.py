"""jaxcnn: the classic image-classification CNNs in JAX/Flax, faithful to their papers.

Importing the package is cheap: TensorFlow is imported only when a tf.data pipeline is built.
"""

__version__ = "0.2.0"
