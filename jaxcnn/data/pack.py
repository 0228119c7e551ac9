"""Fill an image folder's decode-once cache before training (data/cache.py), instead of during the first epoch.

  python -m jaxcnn.data.pack --config=alexnet --config.data_dir=DIR [--workers=N] [--noprocesses]

Any config field may be overridden as in training (`--config.image_size=227`, `--config.data_cache=/ssd/c`).
The rows filled are exactly those training would fill (the same head, key and place). Decoding runs on
`--workers` forked worker processes that store their rows into the same files (on Linux), else (or with
`--noprocesses`) on threads: on a 2-core VM, 2,000 Kaggle-like JPEGs under AlexNet's head, processes filled
1,717-2,119 rows/s and threads 1,125-1,456, each in a fresh process (threads share one allocator and page tables:
~38 more page faults a row).
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


_FORKED_ROWS = None  # the RowCache a forked worker process fills (its memory maps and files inherited)


def _fill_in_worker(indices: list[int]) -> int:
  for i in indices:
    _FORKED_ROWS.fill(i)
  _FORKED_ROWS.flush()
  return len(indices)


def fill(rows: "cache.RowCache", workers: int | None = None, processes: bool = False) -> tuple[int, float]:
  """Fills every row not yet filled (`RowCache.fill`, on threads or forked processes); returns (rows decoded,
  seconds)."""
  global _FORKED_ROWS
  workers = workers or os.cpu_count() or 1
  todo = np.flatnonzero(rows.filled == 0).tolist()
  start = time.perf_counter()
  if processes and todo:
    if "fork" not in multiprocessing.get_all_start_methods():
      raise ValueError("--processes needs fork() (Linux); use threads (leave --processes out)")
    _FORKED_ROWS = rows
    try:
      context = multiprocessing.get_context("fork")
      with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        rows.decodes += sum(pool.map(_fill_in_worker, [todo[k :: workers * 4] for k in range(workers * 4)]))
    finally:
      _FORKED_ROWS = None
  elif todo:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      list(pool.map(rows.fill, todo, chunksize=16))
  rows.flush()
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
  processes = sys.platform == "linux" if FLAGS.processes is None else FLAGS.processes
  try:
    rows, pipeline = open_for_config(config)
    if rows is None:
      sys.exit(f"jaxcnn.data.pack: error: {pipeline.describe()[-1]}")
    print(rows.describe(), flush=True)
    decoded, seconds = fill(rows, FLAGS.workers, processes)
  except (ValueError, OSError) as e:
    sys.exit(f"jaxcnn.data.pack: error: {' '.join(str(e).split())[:250]}")
  rate = f"{decoded / seconds:,.0f} images/s" if decoded else "nothing to decode"
  workers = f"{FLAGS.workers or os.cpu_count()} {'processes' if processes else 'threads'}"
  print(f"packed {decoded:,} rows in {seconds:.1f}s ({rate}, {workers})")
  print(rows.describe())


if __name__ == "__main__":
  _CONFIG = configs.define_flag()
  flags.DEFINE_integer("workers", 0, "Decoding threads or processes (0 = one per core).")
  flags.DEFINE_bool("processes", None, "Decode on forked worker processes (default on Linux), else on threads.")
  app.run(main)
