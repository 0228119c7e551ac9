"""The model zoo: one module per paper family, all reachable through `create(name, ...)`.

Every model takes NHWC images and is called as `module.apply(variables, images, train=...)`.
"""

from jaxcnn.models import lenet  # noqa: F401  (registers the family)
from jaxcnn.models.registry import create, names, register

__all__ = ["create", "names", "register"]
