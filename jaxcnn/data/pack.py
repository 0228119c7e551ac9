"""Fill an image folder's decode-once cache before training (data/cache.py), instead of during the first epoch.

  python -m jaxcnn.data.pack --config=alexnet --config.data_dir=DIR [--workers=N] [--processes]

Any config field may be overridden as in training (`--config.image_size=227`, `--config.data_cache=/ssd/c`).
The rows filled are exactly those training would fill (the same head, key and place). Decoding runs on
`--workers` threads (Pillow releases the GIL while decoding and resizing) or, with `--processes`, on worker
processes that write their rows straight into the memory-mapped file.
"""

import concurrent.futures
import multiprocessing
import os
import sys
import time

import numpy as np
from absl import app, flags

from jaxcnn import configs
from jaxcnn.data import cache

FLAGS = flags.FLAGS


def _fill_rows(data_path, flags_path, nbytes, count, jobs) -> int:
  """Worker process: decode and store rows [(i, path, window, shape, start, stop)]; returns how many."""
  data = np.memmap(data_path, np.uint8, "r+", shape=(max(nbytes, 1),))
  filled = np.memmap(flags_path, np.uint8, "r+", shape=(count,))
  for i, path, window, shape, start, stop in jobs:
    data[start:stop] = cache.head_row(path, window, shape).reshape(-1)
    filled[i] = 1
  data.flush()
  filled.flush()
  return len(jobs)


def fill(rows: "cache.RowCache", workers: int | None = None, processes: bool = False) -> tuple[int, float]:
  """Fills every row not yet filled; returns (rows decoded, seconds)."""
  workers = workers or os.cpu_count() or 1
  todo = np.flatnonzero(rows.filled == 0)
  start = time.perf_counter()
  if processes and len(todo):
    jobs = [
      (
        int(i),
        rows.paths[i],
        rows.windows[i],
        tuple(rows.shapes[i]),
        int(rows.offsets[i]),
        int(rows.offsets[i + 1]),
      )
      for i in todo
    ]
    chunks = [jobs[k :: workers * 4] for k in range(workers * 4)]
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
      args = (str(rows.data_path), str(rows.flags_path), rows.nbytes, len(rows.paths))
      sum(pool.map(_fill_rows, *zip(*[(*args, chunk) for chunk in chunks if chunk])))
    rows.decodes += len(todo)
  elif len(todo):
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      list(pool.map(rows.fill, todo.tolist(), chunksize=16))
  rows.data.flush()
  rows.filled.flush()
  return len(todo), time.perf_counter() - start


def open_for_config(config):
  """(RowCache or None, the InputPipeline) of config's training split, as training opens it."""
  from jaxcnn import data

  pipeline = data.InputPipeline(config, data.load(config))
  return pipeline.row_cache(), pipeline


_CONFIG = None


def main(argv):
  del argv
  config = _CONFIG.value
  if config.dataset != "image_folder":
    sys.exit(
      f"jaxcnn.data.pack: error: --config.dataset is {config.dataset!r}; the cache holds image folders: add "
      "--config.dataset=image_folder"
    )
  try:
    rows, pipeline = open_for_config(config)
  except (ValueError, OSError) as e:
    sys.exit(f"jaxcnn.data.pack: error: {' '.join(str(e).split())[:250]}")
  if rows is None:
    sys.exit(f"jaxcnn.data.pack: error: {pipeline.describe()[-1]}")
  print(rows.describe(), flush=True)
  decoded, seconds = fill(rows, FLAGS.workers, FLAGS.processes)
  rate = f"{decoded / seconds:,.0f} images/s" if decoded else "nothing to decode"
  print(f"packed {decoded:,} rows in {seconds:.1f}s ({rate}, {FLAGS.workers or os.cpu_count()} workers)")
  print(rows.describe())


if __name__ == "__main__":
  _CONFIG = configs.define_flag()
  flags.DEFINE_integer("workers", 0, "Decoding threads or processes (0 = one per core).")
  flags.DEFINE_bool("processes", False, "Decode on worker processes instead of threads.")
  app.run(main)
