"""The named configs: one for every registered model, each building its model, and the experiment configs
documented by the command, hardware, time and result that their docstrings open with.

A few configs, one per paper family, start a real training run on a tiny Fashion-MNIST-format dataset: each
names its paper's dataset, and the single override `dataset=fashion_mnist` (plus the tiny data directory and
a small batch) must be enough, since models on 224-pixel inputs switch to their small-input stems by
themselves. One epoch of 3 steps over 8 devices, then validation.
"""

import datetime
import math
import re
import sys

import jax
import jax.numpy as jnp
import pytest
from absl import flags
from ml_collections.config_flags import config_flags

from jaxcnn import configs, models, train

# The input each config's own dataset gives its model (the ImageNet configs crop 224 pixels).
INPUT_SHAPES = {
  "fashion_mnist": (28, 28, 1),
  "mnist": (28, 28, 1),
  "cifar10": (32, 32, 3),
  "imagenet2012": (224, 224, 3),
}
# The configs that reproduce a result: their docstrings open with the command.
EXPERIMENTS = (
  "lenet5",
  "mlp",
  "fashion_mnist_lenet5",
  "fashion_mnist_simple_cnn",
  "fashion_mnist_simple_cnn_flax",
  "fashion_mnist_alexnet",
  "fashion_mnist_vgg16",
  "fashion_mnist_vgg16_bn",
  "fashion_mnist_googlenet",
  "fashion_mnist_googlenet_bn",
  "fashion_mnist_resnet20",
  "fashion_mnist_resnet18",
  "fashion_mnist_transfer_pretrain",
  "fashion_mnist_transfer_frozen",
  "fashion_mnist_transfer_finetune",
  "fashion_mnist_transfer_scratch",
)
# One config per family trains; those whose models compile for long on the CPU are the slow tier.
TRAINED = ("lenet5", "lenet5_1998", "mlp", "simple_cnn", "resnet20")
TRAINED_SLOW = ("alexnet", "googlenet", "resnet18", "vgg16", "fashion_mnist_lenet5")
BUILT_SLOW = {"resnet1202"}  # 600 blocks: tracing its init alone takes tens of seconds


def test_every_registered_model_has_a_config_of_its_name():
  assert {name for name in models.names() if name not in configs.names() or configs.get(name).model != name} == set()


@pytest.mark.parametrize(
  "name", [pytest.param(n, marks=pytest.mark.slow) if n in BUILT_SLOW else n for n in configs.names()]
)
def test_config_builds_its_model_on_its_datasets_input(name):
  config = configs.get(name)
  model = models.create(config.model, num_classes=10, **config.model_options)
  images = jax.ShapeDtypeStruct((2, *INPUT_SHAPES[config.dataset]), jnp.float32)
  logits, _ = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x, train=False), images)
  assert logits.shape == (2, 10)


def test_a_family_member_loads_through_the_command_line_flag_parser():
  parser = config_flags.ConfigFileFlagParser(name="config")
  assert parser.parse(configs.path_of("resnet34")).model == "resnet34"
  assert parser.parse(configs.path_of("lenet5")).model == "lenet5"


def _parse_command_line(monkeypatch, *arguments):
  """The config `--config` and its overrides give, through the flag training defines (ml_collections reads the
  overrides from sys.argv)."""
  argv = ["jaxcnn", *arguments]
  monkeypatch.setattr(sys, "argv", argv)
  flag_values = flags.FlagValues()
  holder = configs.define_flag(flag_values=flag_values)
  flag_values(argv)
  return holder.value


def _other_value(default, kind):
  """A command-line value for an option that differs from its default, or None for options not given as text."""
  return {bool: lambda: not default, int: lambda: (default or 0) + 1, float: lambda: (default or 0.0) + 0.25}.get(
    kind, lambda: f"{default}x" if kind is str else None
  )()


# Every option of every registered model, set from the command line on a config that does not set it (most set
# none: ResNet-50 v1.5 is `--config.model_options.stride_in_3x3=True`, and ml_collections refuses fields a config
# lacks), including options whose default is None (typed by their annotation).
@pytest.mark.parametrize("model", models.names())
def test_every_models_options_can_be_set_from_the_command_line(monkeypatch, model):
  for key, (default, kind) in models.option_defaults(model).items():
    value = _other_value(default, kind)
    if value is None or isinstance(default, tuple):
      continue
    config = _parse_command_line(
      monkeypatch, "--config=lenet5", f"--config.model={model}", f"--config.model_options.{key}={value}"
    )
    assert config.model_options[key] == value and type(config.model_options[key]) is kind, (key, config.model_options)


def test_an_option_the_model_does_not_take_is_one_error_naming_those_it_does(monkeypatch):
  with pytest.raises(
    flags.IllegalFlagValueError, match="model 'resnet50' takes no option 'strid'; its options: .*stride"
  ):
    _parse_command_line(monkeypatch, "--config=resnet50", "--config.model_options.strid=True")
  # An option the config sets already is overridden as any field (LeNet-5's activation).
  assert (
    _parse_command_line(monkeypatch, "--config=lenet5", "--config.model_options.activation=tanh").model_options[
      "activation"
    ]
    == "tanh"
  )


def test_an_unknown_name_lists_the_known_ones():
  with pytest.raises(ValueError, match="unknown config 'resnet35'; known configs: .*resnet34, "):
    configs.get("resnet35")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_docstring_opens_with_its_command_and_says_what_it_gave(name):
  doc = configs.module_of(name).__doc__
  opening = "\n".join(doc.splitlines()[:8])
  assert f"python -m jaxcnn.main --config={name} --workdir=workdirs/{name}\n" in opening
  assert "--mode=eval" in opening
  flat = " ".join(doc.split())
  # The machine and the day it was measured on: "Hardware: <a CPU or GPU machine>, ... (YYYY-MM-DD)".
  hardware = re.search(r"Hardware: (?P<machine>.+?) \((?P<date>\d{4}-\d{2}-\d{2})\)", flat)
  assert hardware, f"no 'Hardware: ... (YYYY-MM-DD)' in {name}'s docstring"
  assert re.search(r"\b(CPU|GPU|NVIDIA|TPU)\b", hardware["machine"]), hardware["machine"]
  assert datetime.date(2025, 1, 1) <= datetime.date.fromisoformat(hardware["date"]) <= datetime.date.today()
  # The result: accuracies as percentages with two decimals, above chance (10 classes; 5 for the transfer
  # study) and at most 100; the headline figure of the first line is the one the Result states.
  figures = [float(f) for f in re.findall(r"(?<![\d.])(\d{1,3}\.\d{2})%", flat)]
  assert figures and all(0 < f <= 100 for f in figures), figures
  assert max(figures) > 100 / (5 if "transfer" in name else 10) * 2, figures
  headline = re.findall(r"(\d{1,3}\.\d{2})% test top-1|: (\d{1,3}\.\d{2})%", doc.splitlines()[0])
  result = re.search(r"Results?: (.*?)(?: Recipe:|$)", flat)
  for figure in (f for pair in headline for f in pair if f):
    assert result and f"{figure}%" in result[1], f"the first line's {figure}% is not in the Result: {result}"


@pytest.mark.parametrize(
  "name",
  [n for n in EXPERIMENTS if re.search(r"[\d,]+ parameters", " ".join(configs.module_of(n).__doc__.split()))],
)
def test_experiment_docstring_states_its_models_parameter_count(name):
  """The first "N parameters" of the docstring is the count of the model the config builds on its dataset."""
  config = configs.get(name)
  stated = int(re.search(r"([\d,]+) parameters", " ".join(configs.module_of(name).__doc__.split()))[1].replace(",", ""))
  model = models.create(config.model, num_classes=len(config.classes or range(10)), **config.model_options)
  images = jax.ShapeDtypeStruct((1, *INPUT_SHAPES[config.dataset]), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), images)
  assert sum(math.prod(p.shape) for p in jax.tree.leaves(variables["params"])) == stated


@pytest.mark.parametrize("name", [n for n in EXPERIMENTS if "transfer" not in n])
def test_experiment_recipe_is_what_its_docstring_says(name):
  config, doc = configs.get(name), " ".join(configs.module_of(name).__doc__.split())
  assert f"{config.num_epochs} epochs" in doc
  assert f"lr {config.learning_rate:g}" in doc
  assert config.compute_dtype in doc
  if name.startswith("fashion_mnist_"):
    assert (
      config.dataset == "fashion_mnist" and config.validation_size in (5000, "auto") and config.eval_split == "test"
    )


def test_transfer_configs_start_from_the_pretrained_run():
  pretrain = configs.get("fashion_mnist_transfer_pretrain")
  frozen, finetune, scratch = (configs.get(f"fashion_mnist_transfer_{n}") for n in ("frozen", "finetune", "scratch"))
  assert pretrain.classes == (0, 1, 2, 3, 4)
  assert frozen.classes == finetune.classes == scratch.classes == (5, 6, 7, 8, 9)
  assert frozen.init_from == finetune.init_from == "workdirs/fashion_mnist_transfer_pretrain"
  assert frozen.freeze_backbone and finetune.backbone_lr_multiplier == 0.1 and not scratch.init_from


@pytest.mark.parametrize("name", [*TRAINED, *(pytest.param(n, marks=pytest.mark.slow) for n in TRAINED_SLOW)])
def test_config_trains_one_epoch_on_fashion_mnist(name, tiny_data_dir, tmp_path):
  config = configs.get(name)
  config.dataset = "fashion_mnist"
  config.data_dir = str(tiny_data_dir)
  config.validation_size = 60
  config.batch_size = 80  # 240 training images: 3 steps of 10 images per device
  config.eval_batch_size = 64
  config.num_epochs = 1
  config.checkpoint_max_to_keep = 1
  record = train.train_and_evaluate(config, tmp_path)
  assert record["epoch"] == 1 and record["step"] == 3
  assert math.isfinite(record["train_loss"]) and math.isfinite(record["validation_loss"])
  assert record["validation_num_examples"] == 60
