"""Command line: flags -> config -> mode.

  python -m jaxcnn.main --config=lenet5 --workdir=/tmp/lenet5 [--mode=train|eval] [--config.FIELD=VALUE ...]
  python -m jaxcnn.main --config=resnet50 --mode=summary   (per-layer table; needs no workdir or data)

`--config` takes a registered experiment name (see jaxcnn/configs/) or a path to a config file.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxcnn import configs

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results (train and eval modes).")
flags.DEFINE_enum("mode", "train", ["train", "eval", "summary"],
                  "train (resumes if WORKDIR has checkpoints), eval, or summary (layers, params, multiply-adds).")
flags.DEFINE_integer("step", None, "For --mode=eval: the checkpoint step to evaluate (default: the latest).")
flags.DEFINE_integer("epochs_per_run", None, "For --mode=train: stop after this many epochs; rerun to continue "
                     "(for schedulers with time limits).", lower_bound=1)
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.mode != "summary" and not FLAGS.workdir:
    sys.exit(f"jaxcnn: error: --workdir is required for --mode={FLAGS.mode}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every file operation at INFO; --verbosity=0 shows them.
  from jaxcnn import evaluate, summary, train  # after flag parsing, so that --help stays fast

  try:
    if FLAGS.mode == "summary":
      summary.print_summary(_CONFIG.value)
    elif FLAGS.mode == "train":
      train.train_and_evaluate(_CONFIG.value, FLAGS.workdir, FLAGS.epochs_per_run)
    else:
      evaluate.evaluate_checkpoint(_CONFIG.value, FLAGS.workdir, FLAGS.step)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"jaxcnn: error: {' '.join(str(e).split())}")


def run():
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
