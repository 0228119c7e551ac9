"""What a user sees during a run: a progress bar, one line per epoch, and metrics as JSON lines."""

import json
import pathlib
import sys
import time

import jax


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
