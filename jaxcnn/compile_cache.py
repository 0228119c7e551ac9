"""JAX's persistent compilation cache for jaxcnn's entry points: a restart loads its steps instead of compiling.

Where the compiled programs go, first match wins:
  1. the entry point's `--compilation_cache_dir` flag,
  2. the `JAXCNN_CACHE_DIR` environment variable,
  3. JAX's own `JAX_COMPILATION_CACHE_DIR`,
  4. `$XDG_CACHE_HOME/jaxcnn/xla` (`~/.cache/jaxcnn/xla` by default).
An empty value at any of these levels turns the cache off. Deleting the directory is always safe: the next
run compiles again and refills it.

JAX keys each entry by the program, the devices, the compile options, the XLA flags and the jax/jaxlib
versions, so runs with other settings never load each other's programs. JAX's default threshold caches
only programs that took over a second to compile; on the CPU most of the zoo's train and eval steps compile
faster than that, so the threshold here is `MIN_COMPILE_SECONDS`.
"""

import contextlib
import os
import pathlib

ENV = "JAXCNN_CACHE_DIR"
# Small enough that every train and eval step of the zoo is kept (LeNet-5's eval step compiles in a
# fraction of a second on a CPU); large enough that the many tiny programs JAX compiles for array
# creation and indexing are not written as files of their own.
MIN_COMPILE_SECONDS = 0.05

_HIT, _MISS = "/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses"
_counts = {_HIT: 0, _MISS: 0}
_enabled_dir: pathlib.Path | None = None


def default_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache", "jaxcnn", "xla")


def resolve(flag_value: str | None = None) -> pathlib.Path | None:
  """The cache directory for `flag_value` (None: not given) and the environment, or None when turned off."""
  for value in (flag_value, os.environ.get(ENV), os.environ.get("JAX_COMPILATION_CACHE_DIR")):
    if value is not None:
      return pathlib.Path(value).expanduser() if value.strip() else None
  return default_dir()


def _count(event: str, **kwargs) -> None:
  del kwargs
  if event in _counts:
    _counts[event] += 1


def enable(flag_value: str | None = None) -> pathlib.Path | None:
  """Points JAX's persistent compilation cache at `resolve(flag_value)`; returns the directory (None: off).

  Call before the first compilation. Enabling twice in one process keeps the first directory: JAX reads
  the setting once, at the first compilation that uses the cache.
  """
  global _enabled_dir
  import jax
  from jax import monitoring

  directory = resolve(flag_value)
  if directory is None or _enabled_dir is not None:
    return _enabled_dir
  directory.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(directory))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  monitoring.register_event_listener(_count)
  _enabled_dir = directory
  return directory


class Compilations:
  """The persistent-cache hits and misses of the compilations inside a `watch()` block."""

  def __init__(self):
    self.hits = self.misses = 0

  def describe(self) -> str:
    """One phrase for a start line: whether the block's programs came from the cache."""
    if _enabled_dir is None:
      return "compiled (compilation cache off)"
    if self.hits and not self.misses:
      return f"loaded from the compilation cache {_enabled_dir}"
    if self.misses and not self.hits:
      return f"compiled (compilation cache {_enabled_dir})"
    if not self.hits:
      return "already compiled in this process"
    return f"{self.hits} program(s) loaded from the compilation cache, {self.misses} compiled"


@contextlib.contextmanager
def watch():
  """Counts the persistent-cache lookups of the compilations in the block, e.g. a run's first train step:

  with compile_cache.watch() as first_step:
    state, sums = p_train_step(state, batch)
  print(f"train step {first_step.describe()}")
  """
  before = dict(_counts)
  seen = Compilations()
  try:
    yield seen
  finally:
    seen.hits, seen.misses = _counts[_HIT] - before[_HIT], _counts[_MISS] - before[_MISS]
