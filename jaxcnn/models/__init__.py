"""The model zoo: one module per paper family, all reachable through `create(name, ...)`.

Every model takes NHWC images and is called as `module.apply(variables, images, train=...)`.
"""

# Importing a family registers its models.
from jaxcnn.models import alexnet, googlenet, lenet, resnet, tutorial, vgg  # noqa: F401
from jaxcnn.models.registry import create, names, option_defaults, register

__all__ = ["create", "names", "option_defaults", "register"]
