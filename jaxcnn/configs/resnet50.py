"""ResNet-50 (paper form: stride in the first 1x1 of a downsampling bottleneck) on ImageNet with the
`resnet18` config's recipe and small-input behaviour. `--config.model_options.stride_in_3x3=True` gives
the torchvision/NVIDIA "v1.5" network (4.09 G instead of 3.86 G multiply-adds)."""

from jaxcnn.configs import resnet18


def get_config():
  config = resnet18.get_config()
  config.model = "resnet50"
  return config
