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

A program loaded from that cache still costs a restart its tracing and lowering (on a 2-core CPU, more than
the load itself). The steps that entry points wrap in `SavedExecutable` skip those too: the compiled
executable is written to `executables/` in the same directory and loaded by the next process whose key
matches: the step's name, the run's config, the arguments' shapes, dtypes and placements, the devices, XLA
flags, JAX's settings and versions, and the source of every jaxcnn module and registered model. Anything else
(another config, a code change, a jaxlib upgrade) misses and compiles as before. Single-process runs only.
"""

import contextlib
import hashlib
import os
import pathlib
import pickle
import sys

from absl import logging

ENV = "JAXCNN_CACHE_DIR"
# Small enough that every train and eval step of the zoo is kept (LeNet-5's eval step compiles in a
# fraction of a second on a CPU); large enough that the many tiny programs JAX compiles for array
# creation and indexing are not written as files of their own.
MIN_COMPILE_SECONDS = 0.05

_HIT, _MISS = "/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses"
_LOADED, _SAVED = "saved executable loaded", "executable compiled and saved"
_DEFERRED = "step left to compile at its first call"
_counts = {_HIT: 0, _MISS: 0, _LOADED: 0, _SAVED: 0, _DEFERRED: 0}
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
    self.hits = self.misses = self.loaded = self.saved = self.deferred = 0

  def describe(self) -> str:
    """One phrase for a start line: whether the block's programs came from the cache."""
    if self.deferred and not (self.hits or self.misses or self.loaded or self.saved):
      return "compiles at its first call (no memory figure)"
    if _enabled_dir is None:
      return "compiled (compilation cache off)"
    if self.loaded and not (self.misses or self.saved):
      return f"loaded from the compilation cache {_enabled_dir} (a saved executable: not traced or compiled)"
    if self.saved and not (self.hits or self.misses or self.loaded):
      return f"compiled (compilation cache {_enabled_dir})"
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
    seen.loaded, seen.saved = _counts[_LOADED] - before[_LOADED], _counts[_SAVED] - before[_SAVED]
    seen.deferred = _counts[_DEFERRED] - before[_DEFERRED]


def keeps_executables() -> bool:
  """Whether `SavedExecutable`s keep their executables: a cache directory is set and this is the only process."""
  import jax

  return _enabled_dir is not None and jax.process_count() == 1


class SavedExecutable:
  """A jitted or pmapped step whose compiled executables are kept in the cache directory (one per argument
  signature), so that a later process with the same key calls them without tracing, lowering or compiling.

  step = compile_cache.SavedExecutable(jax.jit(train_step), "train_step", config.to_json())

  `key` is what the step closes over that its arguments do not show (the config). Without a cache directory,
  or in a multi-process run, each process compiles its own. `ahead_of_time=False` (the strategy's
  `compiles_ahead_of_time`): `prepare` compiles nothing and calls go to the jitted function, compiled at its first
  call (the memory plan then has no figure for the step).
  """

  def __init__(self, jitted, name: str, key: str, ahead_of_time: bool = True):
    self._jitted, self._name, self._key, self._ahead_of_time = jitted, name, key, ahead_of_time
    self._executables = {}  # argument signature -> callable

  def __call__(self, *args):
    return self.prepare(*args)(*args)

  def prepare(self, *args):
    """The executable for the signature of `args`, loaded or compiled (and saved) now; nothing is run. Without
    `keeps_executables()`, compiled in this process only. `args` may be ShapeDtypeStructs (with the shardings the
    real arguments will have): the memory plan compiles steps before any data exists."""
    import jax

    leaves, treedef = jax.tree.flatten(args)
    signature = (treedef, *((x.shape, x.dtype, getattr(x, "sharding", None)) for x in leaves))
    call = self._executables.get(signature)
    if call is None:
      call = self._executables[signature] = self._load_or_compile(args)
    return call

  def _load_or_compile(self, args):
    import jax

    if not keeps_executables():
      if self._ahead_of_time:
        return self._jitted.lower(*args).compile()
      _counts[_DEFERRED] += 1
      return self._jitted
    from jax.experimental import serialize_executable

    in_tree = jax.tree.structure((args, {}))
    arg_trees = [jax.tree.structure(a) for a in args]
    path = _enabled_dir / "executables" / f"{self._name}-{self._digest(args)}.bin"
    if path.is_file():
      try:
        saved = pickle.loads(path.read_bytes())
        out_tree = jax.tree.structure(_example_tree(saved["outputs"], arg_trees))
        compiled = serialize_executable.deserialize_and_load(saved["executable"], in_tree, out_tree)
      except Exception as e:  # noqa: BLE001  (a damaged or foreign file is compiled again and replaced)
        logging.warning("cannot load the saved executable %s (%s: %s); compiling again", path, type(e).__name__, e)
      else:
        _counts[_LOADED] += 1
        return compiled
    # An executable that JAX's cache loaded serialises without its kernels on the CPU backend (jaxlib 0.10-0.12:
    # the process that loads the file fails, "Function ... not found"): only a fresh compilation is saved, and
    # the step is kept out of JAX's cache so that a lost file is compiled afresh again.
    min_seconds = jax.config.values["jax_persistent_cache_min_compile_time_secs"]
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float("inf"))
    hits = _counts[_HIT]
    try:
      compiled = self._jitted.lower(*args).compile()
    finally:
      jax.config.update("jax_persistent_cache_min_compile_time_secs", min_seconds)
    if _counts[_HIT] > hits:  # written to JAX's cache by an earlier jaxcnn or a multi-process run
      return compiled
    executable, _, out_tree = serialize_executable.serialize(compiled)
    try:
      outputs = _describe_tree(out_tree, arg_trees)
    except TypeError as e:  # outputs of a kind the file cannot describe: this step is compiled by each process
      logging.info("not saving %s: %s", self._name, e)
      return compiled
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
      path.parent.mkdir(parents=True, exist_ok=True)
      partial.write_bytes(pickle.dumps({"executable": executable, "outputs": outputs}))
      os.replace(partial, path)  # whole files only: a process killed while writing leaves no half file behind
    except OSError as e:  # a full disk or a read-only cache costs the next process a compile, not this run
      logging.warning("cannot save the executable %s (%s)", path, e)
      with contextlib.suppress(OSError):
        partial.unlink()
      return compiled
    _counts[_SAVED] += 1
    return compiled

  def _digest(self, args) -> str:
    import jax
    import jaxlib

    from jaxcnn.models import layers

    paths = jax.tree_util.tree_flatten_with_path(args)[0]
    parts = [
      self._name,
      self._key,
      jax.__version__,
      jaxlib.__version__,
      jax.devices()[0].client.platform_version,
      repr([(d.id, d.device_kind, d.platform) for d in jax.devices()]),
      os.environ.get("XLA_FLAGS", ""),
      repr(sorted((k, v) for k, v in jax.config.values.items() if isinstance(v, (bool, int, float, str, type(None))))),
      _source_digest(),
      repr(layers.fast_forms_in_use()),  # what the layers trace to: the kernels switch
      *(f"{jax.tree_util.keystr(p)} {x.shape} {x.dtype} {getattr(x, 'sharding', None)}" for p, x in paths),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _source_digest() -> str:
  """sha256 of the source of every jaxcnn module and of every module that registered a model."""
  from jaxcnn.models import registry

  package = pathlib.Path(__file__).parent
  files = set(package.rglob("*.py"))
  files |= {pathlib.Path(sys.modules[builder.__module__].__file__) for builder in registry.builders()}
  digest = hashlib.sha256()
  for path in sorted(files):
    digest.update(str(path.relative_to(package) if path.is_relative_to(package) else path).encode())
    digest.update(path.read_bytes())
  return digest.hexdigest()


def _describe_tree(treedef, arg_trees) -> tuple:
  """A picklable description of an output tree: subtrees shaped like an argument (the new train state) by
  the argument's index, tuples, lists and dicts by their parts; TypeError for any other node."""
  if treedef in arg_trees:
    return ("argument", arg_trees.index(treedef))
  if treedef.num_nodes == 1:
    return ("leaf",) if treedef.num_leaves == 1 else ("none",)
  kind, aux = treedef.node_data()
  if kind not in (tuple, list, dict):
    raise TypeError(f"output node {kind.__name__} is not a tuple, list, dict or an argument's tree")
  return (kind.__name__, aux, [_describe_tree(child, arg_trees) for child in treedef.children()])


def _example_tree(description: tuple, arg_trees):
  """A tree of zeros with the structure `description` (from `_describe_tree`) stands for."""
  kind = description[0]
  if kind == "argument":
    tree = arg_trees[description[1]]
    return tree.unflatten([0] * tree.num_leaves)
  if kind in ("leaf", "none"):
    return 0 if kind == "leaf" else None
  _, aux, children = description
  parts = [_example_tree(child, arg_trees) for child in children]
  return {"tuple": tuple, "list": list}[kind](parts) if kind != "dict" else dict(zip(aux, parts))
