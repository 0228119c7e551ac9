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
  "fast_forms",
  True,
  "Compute the layers with jaxcnn.fast_forms' faster forms and add its XLA flags; "
  "--nofast_forms runs the plain Flax layers with XLA's defaults, to compare.",
)
flags.DEFINE_alias("kernels", "fast_forms")  # its earlier name: scripts that say --nokernels keep working
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
flags.DEFINE_integer(
  "compilation_cache_max_mb",
  None,
  "The compilation cache's bound in MiB (the least recently used programs go first); 0 = no bound; "
  f"default ${compile_cache.MAX_MB_ENV} or {compile_cache.DEFAULT_MAX_MB}.",
  lower_bound=0,
)
_CONFIG = configs.define_flag("lenet5")


def _parse_flags(argv):
  """absl's parser, with any flag or config-override error reported on one line."""
  try:
    return FLAGS(argv)
  except (flags.Error, KeyError, TypeError, ValueError, AttributeError) as e:
    sys.exit(_error_line(e))


# What --mode=eval and --mode=predict may override in the stored config: how to evaluate, never what the
# network computes (default.NETWORK_FIELDS are refused when they differ; the rest cannot change an evaluation).
EVAL_OVERRIDES = (
  "eval_split",
  "eval_batch_size",
  "eval_augment",
  "eval_weights",
  "data_dir",
  "skip_bad_images",
  "pipeline",
  "compute_dtype",
  "parallelism",
  "step_timeout_seconds",
  "first_step_timeout_seconds",
)


def _config_for_mode():
  """The config: --config (with its overrides) for training; for eval and predict the one stored in the workdir,
  with the overrides that choose how to evaluate (EVAL_OVERRIDES) applied. A --config or override that differs
  from the stored run in what the network computes (default.NETWORK_FIELDS) is refused; other overrides
  cannot change an evaluation and are ignored with a warning."""
  stored = pathlib.Path(FLAGS.workdir, "config.json")
  overrides = config_flags.get_override_values(FLAGS["config"])
  if FLAGS.mode == "train" or not stored.exists():
    config = _CONFIG.value
    if "learning_rate" in overrides and "lr_reference_batch_size" not in overrides:
      config.lr_reference_batch_size = 0  # a rate the user typed is the rate they want, at any batch
    return config
  trained = json.loads(stored.read_text())
  config = ml_collections.ConfigDict(trained)
  # A workdir written by an older jaxcnn lacks the fields added since (e.g. the watchdog's bounds): they take
  # today's defaults, which leave the stored run's meaning unchanged.
  for field, value in default.get_config().items():
    if field not in config:
      config[field] = value
  asked = _CONFIG.value if FLAGS["config"].present else ml_collections.ConfigDict(trained)
  for field, value in overrides.items():
    asked.update_from_flattened_dict({field: value})
  for field, saved, given in default.network_differences(config, asked):
    flag = f"--config.{field}" if any(o.split(".")[0] == field for o in overrides) else "--config"
    raise ValueError(
      f"{stored.parent} was trained with {field}={json.dumps(saved)}; {flag} asks for {json.dumps(given)}, "
      f"another network: leave it out to evaluate the run as trained"
    )
  for field, value in overrides.items():
    if field.split(".")[0] in EVAL_OVERRIDES:
      config.update_from_flattened_dict({field: value})
    elif field.split(".")[0] not in default.NETWORK_FIELDS:
      logging.warning("--config.%s is not used by --mode=%s (it evaluates the run as trained)", field, FLAGS.mode)
  return config


def _jaxcnn_info_and_warnings(record) -> bool:
  """The default log: INFO lines from jaxcnn's own modules; warnings and errors from anywhere, a library's as the
  first line of its message, without a traceback (Orbax logs several per failed write; jaxcnn's error line names
  the failure, and the full message is logged by jaxcnn above it)."""
  if record.pathname.startswith(_PACKAGE_DIR):
    return True
  if record.levelno < logging.converter.STANDARD_WARNING:
    return False
  record.msg, record.args = (record.getMessage().strip().splitlines() or [""])[0], None
  record.exc_info = record.exc_text = record.stack_info = None
  return True


_PACKAGE_DIR = str(pathlib.Path(__file__).parent)
ERROR_LINE_CHARACTERS = 300  # what a person reads at a glance


def _error_line(error: Exception) -> str:
  """`jaxcnn: error: ...` on one line of at most ERROR_LINE_CHARACTERS; a longer message goes to the log whole,
  above the line, which keeps its start."""
  message = " ".join(str(error).split()) or type(error).__name__
  line = f"jaxcnn: error: {message}"
  if len(line) <= ERROR_LINE_CHARACTERS:
    return line
  logging.error("%s: %s", type(error).__name__, str(error))
  suffix = " ... (whole message above)"
  return line[: ERROR_LINE_CHARACTERS - len(suffix)].rstrip() + suffix


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.mode != "summary" and not FLAGS.workdir:
    sys.exit(f"jaxcnn: error: --workdir is required for --mode={FLAGS.mode}")
  if not FLAGS["verbosity"].present:
    # jaxcnn's own INFO lines (what was not used, where weights came from) and every library's warnings; Orbax
    # and JAX log every file operation and compilation at INFO: --verbosity=0 shows those too.
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(_jaxcnn_info_and_warnings)
  # `kill -USR1 PID` writes the Python stack of every thread to stderr and the process goes on: where a slow or
  # stuck run stands, without a debugger (the watchdog writes the same before it ends a run).
  faulthandler.register(signal.SIGUSR1, all_threads=True)
  # Imported after flag parsing, so that --help stays fast; the fast-forms switch adds XLA flags, so it comes
  # before anything starts a JAX backend.
  from jaxcnn import fast_forms

  print(fast_forms.enable() if FLAGS.fast_forms else fast_forms.disable(), flush=True)
  compile_cache.enable(FLAGS.compilation_cache_dir, FLAGS.compilation_cache_max_mb)
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
  except (ValueError, OSError, train.NonFiniteLossError, memory.OutOfMemoryError) as e:
    sys.exit(_error_line(e))


def run():
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
