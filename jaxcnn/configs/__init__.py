"""Named configs: `--config=NAME` for every registered model (its paper's recipe) and every experiment.

A config module has a `get_config()`. A family module (one paper, several depths or variants) lists the
names it answers to in `VARIANTS` and takes the name as `get_config(name)`; the command line reaches it as
`family.py:name`, ml_collections' form for an argument to a config file (big_vision's `config.py:arg`).
A module without `get_config()` is a helper shared by configs, and `default.py` holds the fields every
config starts from. A path to a user's own `.py` config file (optionally `file.py:arg`) works too.
"""

import functools
import importlib
import importlib.util
import pathlib
import sys
import types

import ml_collections

CONFIG_DIR = pathlib.Path(__file__).parent
_NOT_CONFIGS = {"__init__", "default"}


@functools.cache
def _registry() -> dict[str, str]:
  """Config name -> the stem of the module that builds it."""
  registry = {}
  for path in sorted(CONFIG_DIR.glob("*.py")):
    if path.stem in _NOT_CONFIGS:
      continue
    module = importlib.import_module(f"{__name__}.{path.stem}")
    if not hasattr(module, "get_config"):
      continue
    for name in getattr(module, "VARIANTS", (path.stem,)):
      if name in registry:
        raise ValueError(f"config {name!r} is defined by both {registry[name]}.py and {path.name}")
      registry[name] = path.stem
  return registry


def names() -> list[str]:
  """The registered config names, sorted."""
  return sorted(_registry())


def module_of(name: str) -> types.ModuleType:
  """The module that builds the registered config `name` (its docstring is the config's documentation)."""
  if name not in _registry():
    raise ValueError(f"unknown config {name!r}; known configs: {', '.join(names())}")
  return importlib.import_module(f"{__name__}.{_registry()[name]}")


def path_of(name: str) -> str:
  """What ml_collections' config-file flag loads for `name`: a registered name becomes its module's path
  (with `:name` for a family); a path to a .py file, optionally with `:arg`, is checked and kept."""
  file, _, _ = name.partition(":")
  if file.endswith(".py"):
    if not pathlib.Path(file).is_file():
      raise ValueError(f"config file {file!r} does not exist")
    return name
  module = module_of(name)
  return f"{module.__file__}:{name}" if hasattr(module, "VARIANTS") else module.__file__


def get(name: str) -> ml_collections.ConfigDict:
  """Loads a config by name or path, as `--config=name` does (for Python callers and tests)."""
  file, _, arg = path_of(name).partition(":")
  if name.partition(":")[0].endswith(".py"):
    spec = importlib.util.spec_from_file_location(f"jaxcnn_config_{pathlib.Path(file).stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  else:
    module = module_of(name)
  return module.get_config(arg) if arg else module.get_config()


def declare_model_options(config: ml_collections.ConfigDict, argv: list[str]) -> None:
  """Adds to config.model_options each option that a `--config.model_options.K=V` in argv names and the config
  does not set, holding the model's default (`models.option_defaults`; its type parses V): ml_collections
  overrides only fields a config has, and most configs set none of their model's options (ResNet-50 v1.5 is
  `--config.model_options.stride_in_3x3=True`). An option the model (`--config.model` where given) does not
  take is a one-line error naming those it does."""
  prefix = "--config.model_options."
  missing = [arg[len(prefix) :].partition("=")[0] for arg in argv if arg.startswith(prefix)]
  missing = [key for key in dict.fromkeys(missing) if key not in config.get("model_options", {})]
  if not missing:
    return
  from jaxcnn import models

  name = next((arg.partition("=")[2] for arg in reversed(argv) if arg.startswith("--config.model=")), config.model)
  defaults = models.option_defaults(name)
  for key in missing:
    if key not in defaults:
      raise ValueError(
        f"--config.model_options.{key}: model {name!r} takes no option {key!r}; its options: {', '.join(defaults)}"
      )
  with config.unlocked():
    for key in missing:
      default, kind = defaults[key]  # an option that defaults to None still parses as its annotated type
      config.model_options[key] = default if default is not None else ml_collections.FieldReference(None, kind)


def define_flag(default: str = "lenet5", flag_values=None, help_text: str = "Experiment name or config file."):
  """`--config=NAME|FILE` with `--config.FIELD=VALUE` overrides for an absl entry point (training, the data cache's
  pack, the benchmarks): ml_collections' config-file flag, whose file parser also takes a registered name.
  Returns the flag's holder (`.value` is the config; the flag's parser keeps the name as typed, `.typed`); call
  before absl parses the flags."""
  from absl import flags
  from ml_collections import config_flags

  flag_values = flags.FLAGS if flag_values is None else flag_values  # an empty FlagValues is falsy
  holder = config_flags.DEFINE_config_file("config", str(path_of(default)), help_text, flag_values=flag_values)
  file_parser = flag_values["config"].parser

  class NamedConfigParser(flags.ArgumentParser):
    typed = default

    def parse(self, name_or_path):
      self.typed = name_or_path
      config = file_parser.parse(str(path_of(name_or_path)))
      declare_model_options(config, sys.argv)  # the argv ml_collections reads its overrides from
      return config

    def flag_type(self):
      return file_parser.flag_type()

  flag_values["config"].parser = NamedConfigParser()
  return holder
