"""Named experiment configs: one file per experiment, each with a `get_config()`.

`--config=NAME` resolves NAME to `jaxcnn/configs/NAME.py`; a path to a user's own `.py` config file
works too. `default.py` holds the fields every experiment shares and is not an experiment itself.
"""

import pathlib

import ml_collections

CONFIG_DIR = pathlib.Path(__file__).parent
_NOT_EXPERIMENTS = {"__init__", "default"}


def names() -> list[str]:
  """The registered experiment names, sorted."""
  return sorted(p.stem for p in CONFIG_DIR.glob("*.py") if p.stem not in _NOT_EXPERIMENTS)


def path_of(name: str) -> pathlib.Path:
  """Path of the config file for `name` (a registered name or a path to a .py file)."""
  if name.endswith(".py"):
    path = pathlib.Path(name)
    if not path.is_file():
      raise ValueError(f"config file {name!r} does not exist")
    return path
  if name not in names():
    raise ValueError(f"unknown config {name!r}; known configs: {', '.join(names())}")
  return CONFIG_DIR / f"{name}.py"


def get(name: str) -> ml_collections.ConfigDict:
  """Loads a named config (for Python callers and tests; the CLI goes through absl flags)."""
  import importlib.util

  path = path_of(name)
  spec = importlib.util.spec_from_file_location(f"jaxcnn_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()
