"""Import torchvision weights: a torchvision `state_dict` file (.pth) -> a jaxcnn checkpoint.

  python -m jaxcnn.torchvision_weights --arch=resnet50 --pth=resnet50.pth --workdir=runs/resnet50_tv \
      [--config=NAME_OR_FILE]

writes WORKDIR/checkpoints/0 (through jaxcnn.checkpoint, with its run metadata) and WORKDIR/config.json,
so that `python -m jaxcnn.main --mode=eval --workdir=WORKDIR` evaluates the weights and
`--config.init_from=WORKDIR` starts transfer learning or fine-tuning from them. Nothing is downloaded:
the file is one the user already has (e.g. torchvision's ImageNet weights, or a state_dict they saved).
It is opened only with torch's weights-only loader, which refuses a pickle that would run code.

Architectures and the jaxcnn models they become (their model_options go into the stored config):
  alexnet          alexnet_owt
  vgg11..vgg19     vgg11..vgg19, and the _bn twins (FC layers become jaxcnn's dense-evaluation convs)
  googlenet        googlenet_bn (aux_heads=False when the file has no aux1/aux2 weights, as a state_dict
                   saved from torchvision's pretrained model has not)
  resnet18..152    resnet18..152; resnet50..152 with stride_in_3x3=True (torchvision's "v1.5"), an option
                   of bottleneck blocks, which resnet18 and resnet34 do not have (nor the option, then)

Layouts: conv OIHW -> HWIO, Linear (out, in) -> (in, out), BatchNorm weight/bias -> params scale/bias and
running_mean/running_var -> batch_stats mean/var (num_batches_tracked, a counter, is dropped). PyTorch
flattens an NCHW map as C x H x W, jaxcnn an NHWC map as H x W x C: the first Linear after a flatten
(AlexNet's fc6, VGG's fc6, GoogLeNet's aux fc1) has its input rows permuted accordingly.

Inputs: torchvision's ImageNet weights expect RGB in [0, 1] normalised by ImageNet's mean (0.485, 0.456,
0.406) and std (0.229, 0.224, 0.225), resized to 256 and centre-cropped to 224 (the default config
here: eval_augment="center", image_size=224). The import stores that normalisation with its checkpoint, so
eval and predict from its workdir use it. GoogLeNet's pretrained weights were ported from TensorFlow and
torchvision rescales its input with `transform_input=True`, which is equivalent to normalising with mean =
std = 0.5 per channel: its import stores that. AlexNet needs 224x224 inputs (its first FC layer sees a 6x6 map there;
torchvision's adaptive pooling, which jaxcnn's AlexNet does not have, would stretch other sizes). VGG
stretches a final map smaller than 7x7 as torchvision does: it computes torchvision's logits on inputs of
64, 96, ..., 224 pixels (multiples of 32, where torchvision's floor pooling and jaxcnn's ceil windows
agree); above 224 it evaluates densely (the paper's Section 3.2) where torchvision pools to 7x7.
GoogLeNet's auxiliary heads pool 5x5/3 here (the paper's) and adaptively to 4x4 in torchvision: on a
224 input these windows differ, so imported aux heads are a starting point for training, not a copy.
Images below 64 pixels switch jaxcnn's models to small-input stems of other shapes: to start from
ImageNet weights there, pass --config.model_options.small_input=False and resize (config.image_size).
"""

import dataclasses
import functools
import pathlib
import pickle
import sys
from collections.abc import Callable, Iterator

import numpy as np
from absl import app, flags, logging
from flax import traverse_util

import jaxcnn
from jaxcnn import checkpoint, configs, inference, models, optim, train, transfer
from jaxcnn.configs import default
from jaxcnn.models import googlenet

IMAGE_SHAPE = (224, 224, 3)  # torchvision's ImageNet size, which fixes the shapes of the first FC layers


def normalisation(arch: str) -> dict:
  """The input statistics torchvision's weights for `arch` expect (the module docstring), stored with the import
  as a run's `data_stats`: eval and predict normalise with them, as they do with a trained run's."""
  if arch == "googlenet":  # transform_input=True: the TensorFlow port's inputs in [-1, 1]
    return {"mean": [0.5] * 3, "std": [0.5] * 3, "origin": "torchvision"}
  return {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "origin": "torchvision"}


# Each family maps torchvision module names (a state_dict key without .weight/.bias/...) to jaxcnn module
# paths, reading the jaxcnn model's own layer tables. An entry's third field is the (H, W) map that a
# Linear flattens, when jaxcnn's kernel does not show it (a Dense); a superset of the file's modules is fine.
def _alexnet_modules(model):
  del model
  for index, name in zip((0, 3, 6, 8, 10), ("conv1", "conv2", "conv3", "conv4", "conv5")):
    yield f"features.{index}", (name,), None
  yield "classifier.1", ("fc6",), (6, 6)
  yield "classifier.4", ("fc7",), None
  yield "classifier.6", ("fc8",), None


def _vgg_modules(model):
  # torchvision's `features` counts every layer: conv, [BN,] ReLU per conv and one per max-pool.
  index, conv = 0, 0
  for token in models.vgg.CONFIGS[model.config].split():
    if token == "M":
      index += 1
      continue
    conv += 1
    yield f"features.{index}", (f"conv{conv}",), None
    if model.use_bn:
      yield f"features.{index + 1}", (f"bn{conv}",), None
    index += 3 if model.use_bn else 2
  for index, name in ((0, "fc6"), (3, "fc7"), (6, "fc8")):  # its classifier: Linear, ReLU, Dropout, ...
    yield f"classifier.{index}", (name,), None


def _resnet_modules(model):
  yield "conv1", ("conv1",), None
  yield "bn1", ("bn1",), None
  for stage, blocks in enumerate(model.stage_sizes, start=1):
    for block in range(blocks):
      theirs, ours = f"layer{stage}.{block}", f"conv{stage + 1}_{block + 1}"
      for i in range(1, 4 if model.bottleneck else 3):
        yield f"{theirs}.conv{i}", (ours, f"conv{i}"), None
        yield f"{theirs}.bn{i}", (ours, f"bn{i}"), None
      yield f"{theirs}.downsample.0", (ours, "proj"), None
      yield f"{theirs}.downsample.1", (ours, "proj_bn"), None
  yield "fc", ("fc",), None


_GOOGLENET_STEM = {"conv1": "conv1", "conv2": "conv2_reduce", "conv3": "conv2"}
_INCEPTION_BRANCHES = {
  "branch1": "b1x1",
  "branch2.0": "b3x3_reduce",
  "branch2.1": "b3x3",
  "branch3.0": "b5x5_reduce",
  "branch3.1": "b5x5",
  "branch4.1": "pool_proj",
}


def _googlenet_modules(model):
  del model

  def conv_block(theirs, ours):  # torchvision's BasicConv2d and jaxcnn's ConvBlock: a conv and its BN
    yield f"{theirs}.conv", (*ours, "conv"), None
    yield f"{theirs}.bn", (*ours, "bn"), None

  for theirs, ours in _GOOGLENET_STEM.items():
    yield from conv_block(theirs, (ours,))
  for entry in googlenet.INCEPTION:
    if entry != "M":
      for theirs, ours in _INCEPTION_BRANCHES.items():
        yield from conv_block(f"inception{entry[0]}.{theirs}", (f"inception{entry[0]}", ours))
  for aux in googlenet.AUX_AFTER.values():
    yield from conv_block(f"{aux}.conv", (aux, "conv"))
    yield f"{aux}.fc1", (aux, "fc1"), (4, 4)
    yield f"{aux}.fc2", (aux, "fc2"), None
  yield "fc", ("fc",), None


@dataclasses.dataclass(frozen=True)
class Arch:
  model: str  # the jaxcnn model name
  options: dict  # its model_options
  modules: Callable[..., Iterator[tuple]]  # jaxcnn model -> (torchvision module, jaxcnn path, flattened map)
  head: str  # the torchvision module of the classifier, whose rows give the class count


ARCHS = {
  "alexnet": Arch("alexnet_owt", {}, _alexnet_modules, "classifier.6"),
  "googlenet": Arch("googlenet_bn", {}, _googlenet_modules, "fc"),
  **{
    f"vgg{depth}{bn}": Arch(f"vgg{depth}{bn}", {}, _vgg_modules, "classifier.6")
    for depth in (11, 13, 16, 19)
    for bn in ("", "_bn")
  },
  **{
    # Only the options that change the function: a checkpoint's model_options that a run's config lacks draw
    # transfer's "trained with other model_options" warning.
    f"resnet{depth}": Arch(f"resnet{depth}", {"stride_in_3x3": True} if bottleneck else {}, _resnet_modules, "fc")
    for depth, (bottleneck, _) in models.resnet.IMAGENET_DEPTHS.items()
  },
}

# (BatchNorm?, torchvision leaf) -> (jaxcnn collection, leaf)
_LEAVES = {
  (False, "weight"): ("params", "kernel"),
  (False, "bias"): ("params", "bias"),
  (True, "weight"): ("params", "scale"),
  (True, "bias"): ("params", "bias"),
  (True, "running_mean"): ("batch_stats", "mean"),
  (True, "running_var"): ("batch_stats", "var"),
}


@dataclasses.dataclass(frozen=True)
class Imported:
  arch: str
  model: str
  options: dict
  num_classes: int
  variables: dict  # {"params": ..., "batch_stats": ...} as float32 NumPy trees


def load_state_dict(path) -> dict[str, np.ndarray]:
  """The tensors of a .pth state_dict file, read with torch's weights-only loader (no code runs)."""
  import torch  # only here: jaxcnn itself never needs torch

  try:
    loaded = torch.load(path, weights_only=True, map_location="cpu")
  except pickle.UnpicklingError as e:
    raise ValueError(
      f"{path}: refused by torch's weights-only loader (a file that carries code or objects other "
      f"than tensors is not read): {_unpickler_reason(e)}"
    ) from None
  except RuntimeError as e:  # not a torch file, or a damaged one
    raise ValueError(f"{path}: cannot be read as a torch file: {_first_line(e)}") from None
  if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
    raise ValueError(
      f"{path} does not hold a state_dict (a dict of tensor names to tensors), but a {type(loaded).__name__}"
    )
  # Half-precision files widen to jaxcnn's float32 params; integer counters stay as they are.
  return {k: (v.float() if v.is_floating_point() else v).numpy() for k, v in loaded.items()}


def _unpickler_reason(error: Exception) -> str:
  """torch's reason for refusing a file, without its advice to load it unsafely."""
  text = str(error)
  if "WeightsUnpickler error:" not in text:
    return _first_line(error)
  reason = " ".join(text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0].split())
  return reason.split(" Please use", 1)[0]


def _first_line(error: Exception) -> str:
  return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _kernel(weight: np.ndarray, target: tuple[int, ...], flattened: tuple[int, int] | None) -> np.ndarray:
  """A conv (OIHW) or Linear (out, in) weight in jaxcnn's HWIO / (in, out) layout, shaped like `target`
  when it fits (the caller compares the shapes)."""
  if weight.ndim == 4:
    return weight.transpose(2, 3, 1, 0)
  # A Linear's inputs are PyTorch's flatten of a C x H x W map: unflatten, to HWIO like a conv over that
  # map (which VGG's FC layers are here), then flatten in jaxcnn's H x W x C order for a Dense.
  height, width = flattened or (target[:2] if len(target) == 4 else (1, 1))
  out, inputs = weight.shape
  if inputs % (height * width):
    return weight
  kernel = weight.reshape(out, inputs // (height * width), height, width).transpose(2, 3, 1, 0)
  return kernel if len(target) == 4 else kernel.reshape(-1, out)


def _template(model) -> dict:
  """{(collection, *module path, leaf): shape} of `model` on a torchvision-sized input."""
  shapes = inference.variable_shapes(model, IMAGE_SHAPE)
  return {path: leaf.shape for path, leaf in traverse_util.flatten_dict(shapes).items()}


def convert(state_dict: dict[str, np.ndarray], arch: str) -> Imported:
  """jaxcnn variables from a torchvision state_dict of `arch`, with every tensor used and every jaxcnn
  parameter and BatchNorm statistic filled; otherwise a ValueError naming each key at fault."""
  if arch not in ARCHS:
    raise ValueError(f"unknown torchvision architecture {arch!r}; known: {', '.join(sorted(ARCHS))}")
  spec = ARCHS[arch]
  head = f"{spec.head}.weight"
  if head not in state_dict:
    raise ValueError(f"the state_dict has no {head}: it is not a torchvision {arch}")
  options = dict(spec.options)
  if arch == "googlenet" and not any(key.startswith("aux") for key in state_dict):
    options["aux_heads"] = False
  num_classes = int(state_dict[head].shape[0])
  model = models.create(spec.model, num_classes=num_classes, **options)
  template = _template(model)
  modules = {theirs: (ours, flattened) for theirs, ours, flattened in spec.modules(model)}
  converted, unexpected, mismatched = {}, [], []
  for key, value in state_dict.items():
    module, _, leaf = key.rpartition(".")
    if module in modules and leaf == "num_batches_tracked":
      continue
    ours, flattened = modules.get(module, (None, None))
    collection, our_leaf = _LEAVES.get((f"{module}.running_mean" in state_dict, leaf), (None, None))
    path = (collection, *ours, our_leaf) if ours and collection else None
    if path not in template:
      unexpected.append(key)
      continue
    array = _kernel(value, template[path], flattened) if our_leaf == "kernel" else value
    if array.shape != template[path]:
      mismatched.append(f"{key} {tuple(value.shape)} -> {'/'.join(path)} {template[path]}")
      continue
    converted[path] = array.astype(np.float32)
  missing = ["/".join(path) for path in template if path not in converted]
  problems = [
    f"{what}: {', '.join(keys[:8])}{f' and {len(keys) - 8} more' if len(keys) > 8 else ''}"
    for what, keys in (
      ("unexpected torchvision keys", unexpected),
      ("shape mismatches", mismatched),
      (f"jaxcnn {spec.model} entries with no weights in the file", missing),
    )
    if keys
  ]
  if problems:
    raise ValueError(f"cannot convert this state_dict as torchvision {arch}: {'; '.join(problems)}")
  variables = traverse_util.unflatten_dict({path: converted[path] for path in template})
  return Imported(arch, spec.model, options, num_classes, variables)


def imagenet_config():
  """The config stored with imported weights when none is given: ImageNet, evaluated as torchvision does."""
  config = default.get_config()
  # ILSVRC-2012's test labels were never published: its validation split is where accuracy is reported.
  config.update(dataset="imagenet2012", image_size=IMAGE_SHAPE[0], eval_augment="center", eval_split="validation")
  return config


def write_checkpoint(imported: Imported, config, workdir, source: str = "") -> pathlib.Path:
  """Saves `imported` as step 0 of a jaxcnn run in `workdir`, laid out for `config` (its optimizer state
  included, so the run can be resumed as fine-tuning), and stores the config beside it.

  The config's model and model_options become the imported ones. Returns the checkpoints folder.
  """
  workdir = pathlib.Path(workdir)
  config = config.copy_and_resolve_references()
  config.model = imported.model
  config.model_options.update(imported.options)
  checkpointer = checkpoint.Checkpointer(
    workdir / "checkpoints", config.checkpoint_max_to_keep, config.checkpoint_keep_best, config.checkpoint_best_metric
  )
  try:
    if checkpointer.latest_step() is not None:
      raise ValueError(f"{checkpointer.directory} already holds checkpoints; import into an empty workdir")
    model = models.create(config.model, num_classes=imported.num_classes, **config.model_options)
    tx = optim.create(
      config,
      steps_per_epoch=1,
      parameter_groups=functools.partial(transfer.parameter_groups, num_classes=imported.num_classes),
    )
    state = train.create_train_state(config, model, IMAGE_SHAPE, tx, variables=imported.variables)
    meta = checkpoint.run_meta(
      config, imported.num_classes, epoch=0, record={}, controls={}, data_stats=normalisation(imported.arch)
    )
    checkpointer.save(0, state, meta | {"imported_from": {"torchvision": imported.arch, "file": source}})
  finally:
    checkpointer.close()
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")
  return checkpointer.directory


FLAGS = flags.FLAGS


def _define_flags():
  # Only when run as a command: jaxcnn.main defines flags of the same names in absl's global registry.
  flags.DEFINE_enum("arch", None, sorted(ARCHS), "The torchvision architecture the state_dict is of.")
  flags.DEFINE_string("pth", None, "The torchvision state_dict file (read with torch's weights-only loader).")
  flags.DEFINE_string("workdir", None, "Where to write checkpoints/ and config.json (must hold no checkpoints).")
  flags.DEFINE_string(
    "config",
    "",
    "Experiment name or config file the checkpoint is laid out for (its dataset, "
    "optimizer, ...); default: ImageNet with torchvision's centre crop.",
  )
  flags.mark_flags_as_required(["arch", "pth", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file operation at INFO
  try:
    config = configs.get(FLAGS.config) if FLAGS.config else imagenet_config()
    imported = convert(load_state_dict(FLAGS.pth), FLAGS.arch)
    directory = write_checkpoint(imported, config, FLAGS.workdir, source=str(pathlib.Path(FLAGS.pth).absolute()))
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"jaxcnn: error: {' '.join(str(e).split())}")
  options = "".join(f" --config.model_options.{k}={v}" for k, v in imported.options.items())
  print(
    f"torchvision {imported.arch} -> jaxcnn {imported.model} ({imported.num_classes} classes, jaxcnn "
    f"{jaxcnn.__version__}) in {directory}\n"
    f"  evaluate:  python -m jaxcnn.main --mode=eval --workdir={FLAGS.workdir}\n"
    f"  transfer:  python -m jaxcnn.main --config=... --config.model={imported.model}{options} "
    f"--config.init_from={FLAGS.workdir} --workdir=NEW_RUN"
  )


if __name__ == "__main__":
  _define_flags()
  app.run(main)
