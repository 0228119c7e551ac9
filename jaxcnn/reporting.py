"""What a user sees of a run: a progress bar, one line per epoch, metrics as JSON lines, TensorBoard
events and, at the end, PNG plots of the training curves."""

import concurrent.futures
import contextlib
import json
import pathlib
import sys
import threading
import time

import jax
import numpy as np
from absl import logging


def is_reporter() -> bool:
  """Only process 0 prints and writes reports in a multi-process run."""
  return jax.process_index() == 0


class ProgressBar:
  """A one-line bar on a terminal; elsewhere (CI logs, files) a plain line every 25% of the epoch."""

  def __init__(self, total: int, description: str, stream=sys.stderr):
    self.total, self.description, self.stream = total, description, stream
    self.interactive = stream.isatty()
    self.start = time.perf_counter()
    self._next_quarter = 1

  def update(self, done: int, images: int, **values: float) -> None:
    if not is_reporter():
      return
    elapsed = time.perf_counter() - self.start
    fields = " ".join(f"{k}={v:.4f}" for k, v in values.items())
    text = f"{self.description} {done}/{self.total} {fields} {images / max(elapsed, 1e-9):,.0f} img/s"
    if self.interactive:
      filled = int(30 * done / self.total)
      self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {text}\x1b[K")
    elif done * 4 >= self._next_quarter * self.total:
      self._next_quarter = done * 4 // self.total + 1
      self.stream.write(text + "\n")
    self.stream.flush()

  def close(self) -> None:
    if self.interactive and is_reporter():
      self.stream.write("\r\x1b[K")
      self.stream.flush()


class MetricsLog:
  """Appends one JSON object per record to WORKDIR/metrics.jsonl (process 0 only)."""

  def __init__(self, workdir: pathlib.Path):
    self.path = pathlib.Path(workdir) / "metrics.jsonl"

  def write(self, record: dict) -> None:
    if is_reporter():
      with self.path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def epoch_line(record: dict) -> str:
  parts = [f"epoch {record['epoch']:3d}", f"step {record['step']}"]
  for key in ("train_loss", "train_top1_accuracy", "validation_loss", "validation_top1_accuracy"):
    if key in record:
      parts.append(f"{key.replace('_top1_accuracy', '_acc')} {record[key]:.4f}")
  parts.append(f"lr {record['learning_rate']:.5f}")
  parts.append(f"{record['images_per_sec']:,.0f} img/s")
  parts.append(f"{record['epoch_seconds']:.1f}s")
  return " | ".join(parts)


def _tensorboardx():
  """tensorboardX's event writer and summary builders, imported without PyTorch where PyTorch is installed but not
  yet imported.

  tensorboardX imports torch at module level only to accept torch tensors (tensorboardX/writer.py); the
  writer is given NumPy arrays and Python numbers here, and importing torch would add seconds to every
  run's start.
  """
  blocked = "torch" not in sys.modules
  if blocked:
    sys.modules["torch"] = None  # makes `import torch` raise ImportError, which tensorboardX catches
  try:
    from tensorboardX import event_file_writer, summary
    from tensorboardX.proto import event_pb2
  finally:
    if blocked:
      del sys.modules["torch"]
  return event_file_writer.EventsWriter, summary, event_pb2.Event


class TensorBoard:
  """TensorBoard event files in WORKDIR/tensorboard (process 0 only), through tensorboardX.

  Events are written in the calling thread (the main thread's scalars once an epoch, the report thread's images)
  and flushed after each call, not through tensorboardX's SummaryWriter: its writer thread dies at the first failed
  write (a full disk) and every later event then waits forever on its bounded queue, which stalled whole runs.
  Here a failed write costs one warning and the events after it; metrics.jsonl and the checkpoints go on (and
  report the disk themselves). tensorboardX is a dependency, but a machine without it (a bare GPU image) still
  trains: the run warns once and writes no events.
  """

  def __init__(self, workdir: pathlib.Path):
    self.directory = pathlib.Path(workdir) / "tensorboard"
    self._events = None
    self._lock = threading.Lock()
    if not is_reporter():
      return
    try:
      EventsWriter, self._summary, self._event = _tensorboardx()
    except ImportError:
      logging.warning("tensorboardX is not installed: no TensorBoard events (metrics.jsonl is still written)")
      return
    self._guarded(lambda: self._open(EventsWriter))

  def _open(self, EventsWriter) -> None:
    self.directory.mkdir(parents=True, exist_ok=True)
    self._events = EventsWriter(str(self.directory / "events"))

  def scalars(self, step: int, values: dict) -> None:
    if self._events is None:
      return
    numbers = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    self._write(step, [self._summary.scalar(key, value) for key, value in numbers.items()])

  def images(self, step: int, tag: str, images: np.ndarray) -> None:
    """images: float [N, H, W, C] in [0, 1], or views [N, V, H, W, C] (the first view is shown)."""
    if self._events is None:
      return
    if images.ndim == 5:
      images = images[:, 0]
    self._write(step, [self._summary.image(tag, np.clip(images, 0, 1), dataformats="NHWC")])

  def _write(self, step: int, summaries: list) -> None:
    def write():
      if self._events is not None:  # None: an earlier write failed (or another thread's did since the caller looked)
        for summary in summaries:
          self._events.write_event(self._event(wall_time=time.time(), step=int(step), summary=summary))
        self._events.flush()

    self._guarded(write)

  def _guarded(self, write) -> None:
    """Runs `write`; after a failed write (OSError) there are no more events this run, one warning says so."""
    with self._lock:
      try:
        write()
      except OSError as e:
        logging.warning(
          "cannot write TensorBoard events in %s (%s): none after this in this run (metrics.jsonl is still written)",
          self.directory,
          e,
        )
        events, self._events = self._events, None
        if events is not None:
          with contextlib.suppress(OSError):  # what it still buffers cannot be written either
            events.close()

  def close(self) -> None:
    def close():
      events, self._events = self._events, None
      if events is not None:
        events.close()

    self._guarded(close)


def pyplot():
  """matplotlib.pyplot with the file-only Agg backend (no display needed)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


_report_thread: concurrent.futures.ThreadPoolExecutor | None = None
_reports: list[concurrent.futures.Future] = []


def in_background(fn, *args) -> None:
  """Runs `fn(*args)` on the report thread (one, started on first use, after matplotlib's import): work for
  the user's eyes (plots, images) that must not delay a step. An error there is logged, not raised: a picture
  that fails never stops a run."""
  global _report_thread
  if _report_thread is None:
    _report_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxcnn-report")

  def guarded():
    try:
      fn(*args)
    except Exception as e:  # noqa: BLE001
      logging.warning("%s failed on the report thread: %s: %s", getattr(fn, "__name__", fn), type(e).__name__, e)

  _reports.append(_report_thread.submit(guarded))


def wait_for_background() -> None:
  """Waits for what `in_background` was given (before its outputs are read or their writers closed)."""
  while _reports:
    _reports.pop(0).result()


def import_pyplot_in_background() -> None:
  """Starts importing matplotlib (~1 s on a small CPU) on the report thread, for a run that ends with plots.
  Called once the first step is dispatched: from then on the main thread mostly waits for XLA (the GIL is
  free), where during start-up the import would compete with it for the GIL and delay the first step."""
  if is_reporter():
    in_background(pyplot)


def plot_curves(workdir: pathlib.Path) -> pathlib.Path | None:
  """WORKDIR/training_curves.png from metrics.jsonl: loss, top-1 accuracy and learning rate per epoch."""
  path = pathlib.Path(workdir) / "metrics.jsonl"
  if not is_reporter() or not path.exists():
    return None
  records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  plt = pyplot()

  epochs = [r["epoch"] for r in records]
  fig, axes = plt.subplots(1, 3, figsize=(15, 4))
  for ax, metric in zip(axes[:2], ("loss", "top1_accuracy")):
    for split in ("train", "validation", "ema_validation"):
      key = f"{split}_{metric}"
      if any(key in r for r in records):
        ax.plot(epochs, [r.get(key, np.nan) for r in records], marker=".", label=split)
    ax.set_xlabel("epoch")
    ax.set_title(metric.replace("_", " "))
    ax.legend()
    ax.grid(alpha=0.3)
  axes[2].plot(epochs, [r["learning_rate"] for r in records], marker=".")
  axes[2].set_yscale("log")
  axes[2].set_xlabel("epoch")
  axes[2].set_title("learning rate (end of epoch)")
  axes[2].grid(alpha=0.3)
  fig.tight_layout()
  out = pathlib.Path(workdir) / "training_curves.png"
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return out
