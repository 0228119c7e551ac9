"""torchvision weights in jaxcnn: the converted models compute torchvision's logits, a .pth that carries
code is refused, an imported checkpoint evaluates and seeds transfer learning, and it records only the
model_options that change the model's function.

The comparisons with torchvision need torch and torchvision (skipped without them, except under
JAXCNN_REQUIRE_TORCH=1, CI's PyTorch stage, where their absence fails the module):
  pip install torch==2.13.0 torchvision==0.28.0 --index-url https://download.pytorch.org/whl/cpu
  python -m pytest -q tests/test_torchvision.py            (add -m "not slow" for the quick half)
"""

import functools
import json
import logging
import os
import pathlib

import jax
import ml_collections
import numpy as np
import optax
import pytest
from conftest import FAKE_DEVICES, run_jaxcnn

from jaxcnn import checkpoint, configs, evaluate, inference, models, torchvision_weights, train, transfer

try:  # the tests that need them are skipped without them; the importer's own are not
  import torch
except ImportError:
  torch = None
try:
  import torchvision
except ImportError:
  torchvision = None
if os.environ.get("JAXCNN_REQUIRE_TORCH") == "1" and (torch is None or torchvision is None):
  raise ImportError("JAXCNN_REQUIRE_TORCH=1 but torch or torchvision is not installed: the parity tests would skip")
needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")
needs_torchvision = pytest.mark.skipif(torchvision is None, reason="needs torch and torchvision")

REPO = pathlib.Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4  # max abs logit difference, float32

# (arch, input size): AlexNet needs 224 (its first FC layer's map); VGG takes 224 and, stretching its final
# map to fc6's 7x7 as torchvision's adaptive pooling does, 96; the others run at 64 pixels, the smallest that
# keeps jaxcnn's ImageNet stems.
FAST = [
  ("alexnet", 224),
  ("vgg11", 224),
  ("vgg11", 96),
  ("vgg11_bn", 224),
  ("googlenet", 64),
  ("resnet18", 64),
  ("resnet50", 64),
]
SLOW = [
  ("vgg13", 224),
  ("vgg13_bn", 224),
  ("vgg16", 224),
  ("vgg16_bn", 224),
  ("vgg19", 224),
  ("vgg19_bn", 224),
  ("resnet34", 64),
  ("resnet101", 64),
  ("resnet152", 64),
]


def random_torchvision(arch: str, size: int = 64, seed: int = 0, num_classes: int = 1000, **kwargs):
  """torchvision's `arch` in eval mode with random weights, biases and BatchNorm parameters and statistics,
  all of which the conversion must carry (torchvision's own init leaves biases and statistics at 0 and 1).

  The statistics are measured on random images, then perturbed: BatchNorm keeps the activations near
  unit scale at any depth, so that logits of a few units make 1e-4 a strict test, yet every mean and
  variance still changes the result.
  """
  generator = torch.Generator().manual_seed(seed)
  torch.manual_seed(seed)
  if arch == "googlenet":
    kwargs.setdefault("init_weights", False)  # its own (slow) init would be overwritten below
  model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes, **kwargs)
  norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
        # He-scaled, so that signals neither vanish nor explode (GoogLeNet's own std 0.01 would leave its
        # logits equal to the last bias, and the test blind).
        module.weight.normal_(0.0, (2.0 / module.weight[0].numel()) ** 0.5, generator=generator)
        if module.bias is not None:
          module.bias.normal_(0.0, 0.1, generator=generator)
    for norm in norms:
      norm.weight.uniform_(0.5, 1.5, generator=generator)
      norm.bias.normal_(0.0, 0.1, generator=generator)
      norm.momentum = None  # a plain average over the calibration pass
    images = torch.randn(4, 3, size, size, generator=generator)
    model.train()(images)
    for norm in norms:
      norm.running_mean.add_(0.1 * norm.running_var.sqrt() * torch.randn(norm.num_features, generator=generator))
      norm.running_var.mul_(torch.empty(norm.num_features).uniform_(0.7, 1.3, generator=generator))
    # Logits of unit spread: float32's rounding (relative ~1e-6 through ~50 layers) then stays well
    # under the 1e-4 tolerance, which tests the layouts rather than the logits' scale.
    head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    spread = model.eval()(images).std()
    head.weight.div_(spread)
    head.bias.div_(spread)
  return model


def save_state_dict(model, path: pathlib.Path) -> pathlib.Path:
  torch.save(model.state_dict(), path)
  return path


def jaxcnn_logits(imported: torchvision_weights.Imported, images_nchw: np.ndarray) -> np.ndarray:
  model = models.create(imported.model, imported.num_classes, **imported.options)
  apply = jax.jit(functools.partial(model.apply, train=False))
  return np.asarray(apply(imported.variables, images_nchw.transpose(0, 2, 3, 1)))


def assert_same_logits(arch, size, tmp_path):
  reference = random_torchvision(arch, size)
  images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
  with torch.no_grad():
    expected = reference(images).numpy()
  state_dict = torchvision_weights.load_state_dict(save_state_dict(reference, tmp_path / f"{arch}.pth"))
  imported = torchvision_weights.convert(state_dict, arch)
  logits = jaxcnn_logits(imported, images.numpy())
  difference = float(np.abs(logits - expected).max())
  print(f"{arch} at {size}px: max abs difference {difference:.1e}, logits up to {np.abs(expected).max():.2f}")
  assert np.abs(expected[0] - expected[1]).max() > 100 * TOLERANCE  # the logits depend on the image
  assert difference < TOLERANCE
  return imported


@needs_torchvision
@pytest.mark.parametrize("arch,size", FAST)
def test_converted_logits_equal_torchvision(arch, size, tmp_path):
  assert_same_logits(arch, size, tmp_path)


@pytest.mark.slow
@needs_torchvision
@pytest.mark.parametrize("arch,size", SLOW)
def test_converted_logits_equal_torchvision_deep_models(arch, size, tmp_path):
  assert_same_logits(arch, size, tmp_path)


@needs_torchvision
def test_googlenet_without_aux_weights_and_with_transform_input(tmp_path):
  """A state_dict of torchvision's pretrained GoogLeNet has no aux heads and expects `transform_input`:
  jaxcnn drops its aux heads, and normalising with mean = std = 0.5 reproduces the transform."""
  reference = random_torchvision("googlenet", aux_logits=False, transform_input=True)
  pixels = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # RGB in [0, 1]
  mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
  with torch.no_grad():
    expected = reference((pixels - mean) / std).numpy()
  imported = torchvision_weights.convert(
    torchvision_weights.load_state_dict(save_state_dict(reference, tmp_path / "googlenet.pth")), "googlenet"
  )
  assert imported.options == {"aux_heads": False}
  assert not any(name.startswith("aux") for name in imported.variables["params"])
  logits = jaxcnn_logits(imported, ((pixels - 0.5) / 0.5).numpy())
  assert np.abs(logits - expected).max() < TOLERANCE


class RunsCode:
  """Unpickling this calls open(path, "w"): a file appears if the pickle's code runs."""

  def __init__(self, path):
    self.path = str(path)

  def __reduce__(self):
    return open, (self.path, "w")


@needs_torch
def test_a_pth_that_carries_code_is_refused_and_nothing_runs(tmp_path):
  marker = tmp_path / "code_ran"
  path = tmp_path / "evil.pth"
  torch.save({"fc.weight": torch.zeros(10, 512), "payload": RunsCode(marker)}, path)
  with pytest.raises(ValueError, match="weights-only loader"):
    torchvision_weights.load_state_dict(path)
  assert not marker.exists()
  torch.load(path, weights_only=False)  # the file is live: an unsafe load would have run its code
  assert marker.exists()


@needs_torchvision
def test_missing_unexpected_and_misshapen_weights_are_named(tmp_path):
  state_dict = torchvision_weights.load_state_dict(save_state_dict(random_torchvision("resnet18"), tmp_path / "r.pth"))
  del state_dict["layer2.0.bn1.running_var"]
  state_dict["layer9.0.conv1.weight"] = np.zeros((1, 1, 1, 1), np.float32)
  state_dict["layer1.0.conv2.weight"] = np.zeros((64, 64, 1, 1), np.float32)
  with pytest.raises(ValueError) as error:
    torchvision_weights.convert(state_dict, "resnet18")
  message = str(error.value)
  assert "unexpected torchvision keys: layer9.0.conv1.weight" in message
  assert "layer1.0.conv2.weight (64, 64, 1, 1) -> params/conv2_1/conv2/kernel (3, 3, 64, 64)" in message
  assert "batch_stats/conv3_1/bn1/var" in message
  with pytest.raises(ValueError, match="not a torchvision vgg16"):
    torchvision_weights.convert(state_dict, "vgg16")


@needs_torchvision
def test_command_writes_a_checkpoint_that_evaluates_and_seeds_transfer(tmp_path):
  """The command's checkpoint passes Run.restore's checks for its config, computes torchvision's
  logits after the restore, evaluates with --mode=eval's code, and is accepted by config.init_from."""
  reference = random_torchvision("resnet18", num_classes=10)
  pth = save_state_dict(reference, tmp_path / "resnet18.pth")
  config_file = tmp_path / "synthetic64.py"
  config_file.write_text(
    "from jaxcnn.configs import default\n\n\n"
    "def get_config():\n"
    "  config = default.get_config()\n"
    "  config.update(dataset='synthetic', validation_size=0, batch_size=8, eval_batch_size=8)\n"
    "  config.synthetic.update(image_shape=(64, 64, 3), num_classes=10, num_train=64, num_test=16)\n"
    "  return config\n"
  )
  workdir = tmp_path / "imported"
  command = ["--arch=resnet18", f"--pth={pth}", f"--workdir={workdir}", f"--config={config_file}"]
  result = run_jaxcnn(*command, module="jaxcnn.torchvision_weights", devices=FAKE_DEVICES, timeout=300)
  assert result.returncode == 0, result.stderr
  assert "jaxcnn resnet18 (10 classes" in result.stdout

  config = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))  # what --mode=eval reads
  assert config.model == "resnet18" and "stride_in_3x3" not in config.model_options  # basic blocks: no such option
  run = train.Run(config, workdir)
  state, meta = run.restore()
  run.checkpointer.close()
  assert meta["imported_from"]["torchvision"] == "resnet18" and meta["epoch"] == 0
  images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
  with torch.no_grad():
    expected = reference(images).numpy()
  logits = state.apply_fn(
    {"params": state.params, "batch_stats": state.batch_stats},
    images.numpy().transpose(0, 2, 3, 1),
    train=False,
  )
  assert np.abs(np.asarray(logits) - expected).max() < TOLERANCE

  results = evaluate.evaluate_checkpoint(config, workdir)
  assert results["num_examples"] == 16 and results["step"] == 0

  params, _, _ = checkpoint.read_weights(workdir)
  transfer_config = config.copy_and_resolve_references()
  transfer_config.update(init_from=str(workdir), classes=(0, 1, 2))
  fresh = train.Run(transfer_config, tmp_path / "transfer")
  moved = transfer.transfer_weights(fresh.new_state(), transfer_config, num_classes=3)
  fresh.checkpointer.close()
  np.testing.assert_array_equal(np.asarray(moved.params["conv1"]["kernel"]), params["conv1"]["kernel"])
  assert moved.params["fc"]["kernel"].shape == (512, 3)  # a new head for the new classes

  again = run_jaxcnn(*command, module="jaxcnn.torchvision_weights", devices=FAKE_DEVICES, timeout=300)
  assert again.returncode != 0 and "already holds checkpoints" in again.stderr


def state_dict_without_torch(arch: str, num_classes: int) -> dict[str, np.ndarray]:
  """A torchvision ResNet's state_dict as `load_state_dict` returns it, made without torch: its keys and shapes
  follow from the jaxcnn model that the importer builds for `arch`, its values are random."""
  spec = torchvision_weights.ARCHS[arch]
  model = models.create(spec.model, num_classes=num_classes, **spec.options)
  shapes = inference.variable_shapes(model, torchvision_weights.IMAGE_SHAPE)
  theirs = {"kernel": "weight", "bias": "bias", "scale": "weight", "mean": "running_mean", "var": "running_var"}
  rng = np.random.default_rng(0)
  state_dict = {}
  for module, ours, _ in spec.modules(model):
    for collection in ("params", "batch_stats"):
      leaves = functools.reduce(lambda tree, key: tree.get(key, {}), ours, shapes[collection])
      for leaf, shape in leaves.items():
        shape = shape.shape
        if leaf == "kernel":  # HWIO -> OIHW, (in, out) -> (out, in)
          shape = (shape[3], shape[2], *shape[:2]) if len(shape) == 4 else shape[::-1]
        state_dict[f"{module}.{theirs[leaf]}"] = rng.normal(size=shape).astype(np.float32)
  return state_dict


@pytest.mark.parametrize(
  "arch,warns",
  [("resnet34", False), ("resnet50", True)],  # basic blocks: nothing differs; bottlenecks: torchvision's v1.5
)
def test_an_imported_checkpoint_warns_only_of_model_options_that_differ_in_effect(arch, warns, tmp_path, caplog):
  """`--config=resnet34 --config.init_from=IMPORTED` draws no warning (stride_in_3x3 does not apply to basic
  blocks, and the importer no longer records it); a ResNet-50 import, torchvision's v1.5, still warns when
  used with the paper's ResNet-50."""
  imported = torchvision_weights.convert(state_dict_without_torch(arch, num_classes=10), arch)
  torchvision_weights.write_checkpoint(imported, torchvision_weights.imagenet_config(), tmp_path / "imported")
  config = configs.get(arch)
  config.init_from = str(tmp_path / "imported")
  model = models.create(config.model, num_classes=10, **config.model_options)
  state = train.create_train_state(
    config, model, torchvision_weights.IMAGE_SHAPE, optax.sgd(0.1), variables=imported.variables
  )
  with caplog.at_level(logging.WARNING):
    transfer.transfer_weights(state, config, num_classes=10)
  warnings = [r.getMessage() for r in caplog.records if "trained with other model_options" in r.getMessage()]
  if warns:
    assert len(warnings) == 1 and "stride_in_3x3=True here None" in warnings[0]
  else:
    assert not warnings
