"""The PyTorch twins of jaxcnn's models: the measuring stick of `python -m jaxcnn.bench --compare=pytorch`.

Needs PyTorch (`pip install jaxcnn[compare]`); nothing else in jaxcnn imports this module, and the bench's
PyTorch worker imports it only when it runs. The same architectures as jaxcnn's zoo, layer for layer (the
parameter counts and multiply-adds are compared with jaxcnn's), trained the same way: SGD with momentum and
coupled weight decay on a cross-entropy loss, the same batch and precision, synthetic data already on the
device, in channels_last memory format; on a GPU with `cudnn.benchmark` and bfloat16 autocast for
`precision="bfloat16"`; eager or `torch.compile`d. torchvision's own ResNet-50 (v1.5: stride in the 3x3),
VGG-16 and AlexNet (the "one weird trick" layout, jaxcnn's `alexnet_owt`) when torchvision is importable.
The thread count is the caller's (`torch.set_num_threads`).

`plain_loop` is the bench's self-check: the same twin trained the way a user's script does (model,
optimizer, a `for` loop, a clock around it), run in a process of its own, outside the bench's worker
protocol: `python -m jaxcnn.bench.torch_models SPEC_JSON` prints its images/s as one JSON line. Run with no
argument it prints the twins' parameter counts and multiply-adds.
"""

import functools
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


class LeNet5(nn.Module):
  """jaxcnn `lenet5`: 28x28 centred in 32x32, conv 6@5x5, max-pool, conv 16@5x5, max-pool, conv 120@5x5, 84, classes."""

  def __init__(self, num_classes: int, channels: int):
    super().__init__()
    self.features = nn.Sequential(
      nn.Conv2d(channels, 6, 5),
      nn.ReLU(),
      nn.MaxPool2d(2),
      nn.Conv2d(6, 16, 5),
      nn.ReLU(),
      nn.MaxPool2d(2),
      nn.Conv2d(16, 120, 5),
      nn.ReLU(),
      nn.Flatten(),
      nn.Linear(120, 84),
      nn.ReLU(),
      nn.Linear(84, num_classes),
    )

  def forward(self, x):
    pad_h, pad_w = max(32 - x.shape[2], 0), max(32 - x.shape[3], 0)
    return self.features(F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)))


def mlp(num_classes: int, channels: int, size: int) -> nn.Module:
  """jaxcnn `mlp`: flatten, Dense 128 ReLU, Dense classes."""
  return nn.Sequential(nn.Flatten(), nn.Linear(size * size * channels, 128), nn.ReLU(), nn.Linear(128, num_classes))


def simple_cnn(num_classes: int, channels: int, size: int) -> nn.Module:
  """jaxcnn `simple_cnn`: conv 32@3x3, avg-pool, conv 64@3x3, avg-pool, Dense 256, Dense classes."""
  return nn.Sequential(
    nn.Conv2d(channels, 32, 3, padding=1),
    nn.ReLU(),
    nn.AvgPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1),
    nn.ReLU(),
    nn.AvgPool2d(2),
    nn.Flatten(),
    nn.Linear(64 * (size // 4) ** 2, 256),
    nn.ReLU(),
    nn.Linear(256, num_classes),
  )


class BasicBlockA(nn.Module):
  """jaxcnn CIFAR ResNet block, shortcut option A (subsample and zero-pad the identity)."""

  def __init__(self, inputs: int, features: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(inputs, features, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(features)
    self.conv2 = nn.Conv2d(features, features, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(features)
    self.stride, self.grow = stride, features - inputs

  def forward(self, x):
    y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    if self.stride != 1 or self.grow:
      x = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.grow))
    return F.relu(y + x)


class CifarResNet(nn.Module):
  """jaxcnn `resnet{6n+2}` (He et al. Section 4.2): 3x3 16 stem, three stages of n blocks at 16-32-64."""

  def __init__(self, depth: int, num_classes: int, channels: int):
    super().__init__()
    n = (depth - 2) // 6
    self.stem = nn.Sequential(nn.Conv2d(channels, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
    blocks, inputs = [], 16
    for stage, features in enumerate((16, 32, 64)):
      for block in range(n):
        blocks.append(BasicBlockA(inputs, features, 2 if stage > 0 and block == 0 else 1))
        inputs = features
    self.blocks = nn.Sequential(*blocks)
    self.fc = nn.Linear(64, num_classes)

  def forward(self, x):
    return self.fc(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def alexnet(num_classes: int, channels: int, size: int) -> nn.Module:
  """jaxcnn `alexnet` with its small-input stem (below 64 pixels: conv1 5x5/1 'SAME'), paper LRN and dropout.

  PyTorch's LocalResponseNorm divides alpha by the window size: alpha 5e-4 here is the paper's 1e-4.
  """
  if size >= 64:
    raise ValueError("the PyTorch twin of jaxcnn's alexnet covers its small-input stem (images below 64 pixels)")
  pooled = size
  for _ in range(3):
    pooled = (pooled - 3) // 2 + 1
  lrn = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
  return nn.Sequential(
    nn.Conv2d(channels, 96, 5, padding=2),
    nn.ReLU(),
    lrn(),
    nn.MaxPool2d(3, 2),
    nn.Conv2d(96, 256, 5, padding=2),
    nn.ReLU(),
    lrn(),
    nn.MaxPool2d(3, 2),
    nn.Conv2d(256, 384, 3, padding=1),
    nn.ReLU(),
    nn.Conv2d(384, 384, 3, padding=1),
    nn.ReLU(),
    nn.Conv2d(384, 256, 3, padding=1),
    nn.ReLU(),
    nn.MaxPool2d(3, 2),
    nn.Flatten(),
    nn.Linear(256 * pooled * pooled, 4096),
    nn.ReLU(),
    nn.Dropout(0.5),
    nn.Linear(4096, 4096),
    nn.ReLU(),
    nn.Dropout(0.5),
    nn.Linear(4096, num_classes),
  )


def _torchvision(name: str):
  def build(num_classes: int, channels: int, size: int) -> nn.Module:
    import torchvision

    if channels != 3:
      raise ValueError(f"torchvision's {name} takes 3-channel images")
    return getattr(torchvision.models, name)(num_classes=num_classes)

  return build


# jaxcnn model name -> builder(num_classes, channels, size).
MODELS = {
  "lenet5": lambda num_classes, channels, size: LeNet5(num_classes, channels),
  "mlp": mlp,
  "simple_cnn": simple_cnn,
  "alexnet": alexnet,
  **{
    f"resnet{d}": functools.partial(
      lambda depth, num_classes, channels, size: CifarResNet(depth, num_classes, channels), d
    )
    for d in (20, 32, 44, 56, 110)
  },
  # torchvision's layouts: ResNet-50 v1.5 (stride in the 3x3; jaxcnn's resnet50 strides in the 1x1 by
  # default, same parameters, ~4% fewer multiply-adds), VGG-16 and AlexNet "one weird trick".
  "resnet50": _torchvision("resnet50"),  # compare with --model_options=stride_in_3x3=True
  "vgg16": _torchvision("vgg16"),
  "alexnet_owt": _torchvision("alexnet"),
}


def parameter_count(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters() if p.requires_grad)


def multiply_adds(model: nn.Module, image_shape) -> int:
  """Forward multiply-adds per image of the convolutions and dense layers (what jaxcnn.summary counts)."""
  size, _, channels = image_shape
  total = 0

  def count(module, inputs, output):
    nonlocal total
    spatial = output[0, 0].numel() if isinstance(module, nn.Conv2d) else 1
    total += spatial * module.weight.numel()

  hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
  was_training = model.training
  with torch.no_grad():
    model.eval()(torch.zeros(1, channels, size, size, device=next(model.parameters()).device))
  model.train(was_training)
  for hook in hooks:
    hook.remove()
  return total


class TrainStep:
  """A PyTorch model, optimizer and synthetic batch; `run(steps)` times that many training steps.

  Set up the way users who want speed run PyTorch: channels_last memory format, `cudnn.benchmark` on a GPU,
  bfloat16 autocast for `precision="bfloat16"` (GPU only), and `compile=True` for `torch.compile` (compiled
  by the first step). `tf32` allows TensorFloat-32 in float32 matmuls and convolutions on a GPU.
  """

  def __init__(
    self,
    name: str,
    num_classes: int,
    image_shape,
    batch_size: int,
    precision: str = "float32",
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    learning_rate: float = 0.01,
    compile: bool = False,
    tf32: bool = True,
  ):
    if name not in MODELS:
      raise KeyError(f"no PyTorch twin of jaxcnn model {name!r}; known: {', '.join(sorted(MODELS))}")
    size, _, channels = image_shape
    self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if precision == "bfloat16" and self.device.type != "cuda":
      raise ValueError("bfloat16 autocast is measured on a GPU only (CPU autocast is not what jaxcnn compares to)")
    if self.device.type == "cuda":
      torch.backends.cudnn.benchmark = True
      torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    self.precision, self.compiled = precision, compile
    self.memory_format = torch.channels_last
    self.model = MODELS[name](num_classes, channels, size).to(self.device, memory_format=self.memory_format).train()
    self.params = parameter_count(self.model)
    self.macs = multiply_adds(self.model, image_shape)
    self.optimizer = torch.optim.SGD(
      self.model.parameters(), lr=learning_rate, momentum=momentum, weight_decay=weight_decay
    )
    self.forward = torch.compile(self.model) if compile else self.model
    generator = torch.Generator().manual_seed(0)
    self.images = torch.randn(batch_size, channels, size, size, generator=generator).to(
      self.device, memory_format=self.memory_format
    )
    self.labels = torch.randint(0, num_classes, (batch_size,), generator=generator).to(self.device)
    self.batch_size = batch_size

  def _step(self):
    self.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
      loss = F.cross_entropy(self.forward(self.images), self.labels)
    loss.backward()
    self.optimizer.step()

  def _sync(self):
    if self.device.type == "cuda":
      torch.cuda.synchronize()

  def run(self, steps: int) -> float:
    """Seconds for `steps` training steps (the device drained before and after)."""
    self._sync()
    start = time.perf_counter()
    for _ in range(steps):
      self._step()
    self._sync()
    return time.perf_counter() - start

  def peak_memory_bytes(self):
    return torch.cuda.max_memory_allocated() if self.device.type == "cuda" else None

  @property
  def description(self) -> str:
    where = torch.cuda.get_device_name() if self.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    return f"PyTorch {torch.__version__} {'compiled' if self.compiled else 'eager'} ({where})"


def plain_loop(spec: dict) -> list[float]:
  """The bench's self-check: images/s of `spec`'s twin in a plain training loop, one figure per repeat.

  Written as a PyTorch user writes it, sharing nothing with `TrainStep` but the model: the process pinned to
  the bench's CPUs with as many threads, SGD (momentum 0.9, coupled weight decay 5e-4), one synthetic batch in
  channels_last memory, `spec["warmup"]` untimed steps, then `spec["repeats"]` back-to-back runs of
  `spec["steps"]` steps, each timed with a clock around the loop (float32, CPU or GPU).
  """
  if spec.get("cpus"):
    os.sched_setaffinity(0, spec["cpus"])
  torch.set_num_threads(len(os.sched_getaffinity(0)))
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  size, _, channels = spec["image_shape"]
  model = MODELS[spec["model"]](10, channels, size).to(device, memory_format=torch.channels_last)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
  images = torch.randn(spec["batch_size"], channels, size, size).to(device, memory_format=torch.channels_last)
  labels = torch.randint(0, 10, (spec["batch_size"],), device=device)

  def train(steps: int) -> float:
    if device.type == "cuda":
      torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
      optimizer.zero_grad()
      F.cross_entropy(model(images), labels).backward()
      optimizer.step()
    if device.type == "cuda":
      torch.cuda.synchronize()
    return time.perf_counter() - start

  train(max(spec["warmup"], 1))
  return [spec["steps"] * spec["batch_size"] / train(spec["steps"]) for _ in range(spec["repeats"])]


if __name__ == "__main__":
  if len(sys.argv) > 1:
    print(json.dumps({"images_per_sec_runs": plain_loop(json.loads(sys.argv[1]))}), flush=True)
    sys.exit()
  for model_name, shape in (
    ("lenet5", (28, 28, 1)),
    ("mlp", (28, 28, 1)),
    ("simple_cnn", (28, 28, 1)),
    ("resnet20", (32, 32, 3)),
    ("alexnet", (32, 32, 3)),
  ):
    twin = MODELS[model_name](10, shape[2], shape[0])
    print(f"{model_name:<12} {parameter_count(twin):>12,} parameters {multiply_adds(twin, shape):>14,} multiply-adds")
