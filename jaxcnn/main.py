"""Command line: flags -> config -> mode.

  python -m jaxcnn.main --config=lenet5 --workdir=/tmp/lenet5 [--mode=train|eval] [--config.FIELD=VALUE ...]
  python -m jaxcnn.main --config=resnet50 --mode=summary   (per-layer table; needs no workdir or data)

`--config` takes a registered experiment name (see jaxcnn/configs/) or a path to a config file. In
--mode=eval and --mode=predict it may be left out: the config stored in WORKDIR is used.
"""

import faulthandler
import json
import pathlib
import signal
import sys

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from jaxcnn import compile_cache, configs
from jaxcnn.configs import default

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results (all modes but summary).")
flags.DEFINE_enum(
  "mode",
  "train",
  ["train", "eval", "predict", "summary"],
  "train (resumes if WORKDIR has checkpoints), eval (a whole split), predict (--images), or "
  "summary (layers, params, multiply-adds).",
)
flags.DEFINE_integer("step", None, "For --mode=eval/predict: the checkpoint step (default: the latest).")
flags.DEFINE_string("images", None, "For --mode=predict: image files or folders, comma-separated.")
flags.DEFINE_integer(
  "epochs_per_run",
  None,
  "For --mode=train: stop after this many epochs; rerun to continue (for schedulers with time limits).",
  lower_bound=1,
)
flags.DEFINE_bool(
  "kernels",
  True,
  "Compute the layers with jaxcnn.kernels' faster forms and add its XLA flags; "
  "--nokernels runs the plain Flax layers with XLA's defaults, to compare.",
)
flags.DEFINE_string("coordinator_address", None, "Multi-process: host:port of process 0's coordinator.")
flags.DEFINE_integer("num_processes", None, "Multi-process: how many processes take part.", lower_bound=1)
flags.DEFINE_integer("process_id", None, "Multi-process: this process's index in [0, num_processes).", lower_bound=0)
flags.DEFINE_integer(
  "heartbeat_timeout", 30, "Multi-process: seconds of silence after which a peer counts as dead.", lower_bound=1
)
flags.DEFINE_string(
  "compilation_cache_dir",
  None,
  "JAX's persistent compilation cache, so restarts, eval and predict "
  f"load the compiled steps; empty = off; default ${compile_cache.ENV} or ~/.cache/jaxcnn/xla.",
)
_CONFIG = config_flags.DEFINE_config_file("config", str(configs.path_of("lenet5")), "Experiment name or config file.")


class _NamedConfigParser(flags.ArgumentParser):
  """Accepts a registered experiment name as well as a path; ml_collections' parser loads the file."""

  def __init__(self, file_parser: flags.ArgumentParser):
    self._file_parser = file_parser

  def parse(self, name_or_path):
    return self._file_parser.parse(str(configs.path_of(name_or_path)))

  def flag_type(self):
    return self._file_parser.flag_type()


FLAGS["config"].parser = _NamedConfigParser(FLAGS["config"].parser)


def _parse_flags(argv):
  """absl's parser, with any flag or config-override error reported on one line."""
  try:
    return FLAGS(argv)
  except (flags.Error, KeyError, TypeError, ValueError, AttributeError) as e:
    message = " ".join(str(e).split())
    sys.exit(f"jaxcnn: error: {message}")


def _config_for_mode():
  """The config: --config for training; for the other modes the one stored in the workdir, when no
  --config is given, with any --config.FIELD overrides applied (so eval needs only the workdir)."""
  stored = pathlib.Path(FLAGS.workdir, "config.json")
  overrides = config_flags.get_override_values(FLAGS["config"])
  if FLAGS.mode == "train" or FLAGS["config"].present or not stored.exists():
    config = _CONFIG.value
    if "learning_rate" in overrides and "lr_reference_batch_size" not in overrides:
      config.lr_reference_batch_size = 0  # a rate the user typed is the rate they want, at any batch
    return config
  config = ml_collections.ConfigDict(json.loads(stored.read_text()))
  # A workdir written by an older jaxcnn lacks the fields added since (e.g. the watchdog's bounds): they take
  # today's defaults, which leave the stored run's meaning unchanged.
  for field, value in default.get_config().items():
    if field not in config:
      config[field] = value
  for field, value in overrides.items():
    config.update_from_flattened_dict({field: value})
  return config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.mode != "summary" and not FLAGS.workdir:
    sys.exit(f"jaxcnn: error: --workdir is required for --mode={FLAGS.mode}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file operation at INFO; --verbosity=0 shows them.
  # `kill -USR1 PID` writes the Python stack of every thread to stderr and the process goes on: where a slow or
  # stuck run stands, without a debugger (the watchdog writes the same before it ends a run).
  faulthandler.register(signal.SIGUSR1, all_threads=True)
  # Imported after flag parsing, so that --help stays fast; the kernels switch adds XLA flags, so it comes
  # before anything starts a JAX backend.
  from jaxcnn import kernels

  print(kernels.enable() if FLAGS.kernels else kernels.disable(), flush=True)
  compile_cache.enable(FLAGS.compilation_cache_dir)
  from jaxcnn import evaluate, memory, parallel, summary, train

  try:
    if FLAGS.mode == "summary":
      summary.print_summary(_CONFIG.value)
      return
    parallel.initialize_multihost(
      FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id, FLAGS.heartbeat_timeout
    )
    config = _config_for_mode()
    if FLAGS.mode == "train":
      train.train_and_evaluate(config, FLAGS.workdir, FLAGS.epochs_per_run)
    elif FLAGS.mode == "eval":
      evaluate.evaluate_checkpoint(config, FLAGS.workdir, FLAGS.step)
    else:
      if not FLAGS.images:
        raise ValueError("--mode=predict needs --images=FILE[,FILE|FOLDER...]")
      evaluate.predict(config, FLAGS.workdir, FLAGS.images, FLAGS.step)
  except (ValueError, FileNotFoundError, train.NonFiniteLossError, memory.OutOfMemoryError) as e:
    sys.exit(f"jaxcnn: error: {' '.join(str(e).split())}")


def run():
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
