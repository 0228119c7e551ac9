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

What the cache holds is machine code, and JAX's own loader of saved executables is pickle: whoever can write
into the directory could run code in every process that loads from it. So `enable` refuses (one warning line;
the run compiles without a cache) a directory that another user owns or that others can write, or below a
directory others could replace it in (each ancestor: owned by us or root and not writable by others, a
root-owned sticky directory such as /tmp excepted), or that holds a file of JAX's another user owns or others
can write; each saved executable is checked the same way (owned by us, not writable by others) on the open file
before it is read, and everything written here is private (0700 directories, 0600 files). The executables
themselves are kept in a plain container (a JSON header describing the output tree, then JAX's bytes).

Its size is bounded (`max_bytes`: `--compilation_cache_max_mb`, `JAXCNN_CACHE_MAX_MB`, default 2 GiB): half for
JAX's files (JAX's own least-recently-used eviction, `jax_compilation_cache_max_size`), half for `executables/`
(least recently used first: a load touches the file, each save trims the folder).
"""

import contextlib
import grp
import hashlib
import importlib.util
import json
import os
import pathlib
import pwd
import stat
import sys
import time

from absl import logging

ENV = "JAXCNN_CACHE_DIR"
MAX_MB_ENV = "JAXCNN_CACHE_MAX_MB"
DEFAULT_MAX_MB = 2048  # fits a laptop; a GPU's ResNet-50 train step is a few hundred MB
JAX_SHARE = 0.5  # of the bound, for JAX's own files; the rest for executables/
# Small enough that every train and eval step of the zoo is kept (LeNet-5's eval step compiles in a
# fraction of a second on a CPU); large enough that the many tiny programs JAX compiles for array
# creation and indexing are not written as files of their own.
MIN_COMPILE_SECONDS = 0.05

_HIT, _MISS = "/jax/compilation_cache/cache_hits", "/jax/compilation_cache/cache_misses"
_LOADED, _SAVED = "saved executable loaded", "executable compiled and saved"
_DEFERRED = "step left to compile at its first call"
_counts = {_HIT: 0, _MISS: 0, _LOADED: 0, _SAVED: 0, _DEFERRED: 0}
_enabled_dir: pathlib.Path | None = None
_executables_budget: int | None = None  # bytes executables/ may hold; None: no bound
_MAGIC = b"jaxcnn saved executable 1\n"  # then one line of JSON (the output tree, the payload's size), then JAX's bytes
_STALE_TMP_SECONDS = 3600  # a partial file this old belongs to a process that died while writing it


class Refused(Exception):
  """A cache directory or file that others could have written: (why, what to do)."""

  def __init__(self, reason: str, advice: str):
    super().__init__(reason)
    self.reason, self.advice = reason, advice


def default_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache", "jaxcnn", "xla")


def resolve(flag_value: str | None = None) -> pathlib.Path | None:
  """The cache directory for `flag_value` (None: not given) and the environment, or None when turned off."""
  for value in (flag_value, os.environ.get(ENV), os.environ.get("JAX_COMPILATION_CACHE_DIR")):
    if value is not None:
      return pathlib.Path(value).expanduser() if value.strip() else None
  return default_dir()


def max_bytes(flag_value: int | None = None) -> int | None:
  """The bound on the cache directory in bytes from `flag_value` (MiB; None: not given), `JAXCNN_CACHE_MAX_MB`,
  else DEFAULT_MAX_MB; None for 0 (no bound). A value that is not a number >= 0 is refused (ValueError)."""
  value = flag_value
  if value is None:
    text = os.environ.get(MAX_MB_ENV, "").strip()
    try:
      value = int(text) if text else DEFAULT_MAX_MB
    except ValueError:
      raise ValueError(f"{MAX_MB_ENV}={text!r} is not a whole number of MiB (0 = no bound)") from None
  if value < 0:
    raise ValueError(f"the compilation cache's bound must be >= 0 MiB (0 = no bound), got {value}")
  return value * 2**20 if value else None


def _count(event: str, **kwargs) -> None:
  del kwargs
  if event in _counts:
    _counts[event] += 1


def enable(flag_value: str | None = None, max_mb: int | None = None) -> pathlib.Path | None:
  """Points JAX's persistent compilation cache at `resolve(flag_value)`, bounded by `max_bytes(max_mb)`; returns
  the directory (None: off, or refused: see the module's docstring; a refusal is one warning line).

  Call before the first compilation. Enabling twice in one process keeps the first directory: JAX reads
  the setting once, at the first compilation that uses the cache.
  """
  global _enabled_dir, _executables_budget
  import jax
  from jax import monitoring

  if _enabled_dir is not None:
    return _enabled_dir
  directory = resolve(flag_value)
  try:
    bound = max_bytes(max_mb)
  except ValueError as e:
    bound = DEFAULT_MAX_MB * 2**20
    logging.warning("%s; using %d MiB", e, DEFAULT_MAX_MB)
  if directory is not None:
    try:
      directory = _prepare(directory)
    except Refused as e:
      logging.warning(
        "compilation cache %s refused: %s; the run compiles without a cache; %s", directory, e.reason, e.advice
      )
      directory = None
    except OSError as e:
      logging.warning("compilation cache %s unusable (%s); the run compiles without a cache", directory, e)
      directory = None
  if directory is None:
    # Also when JAX_COMPILATION_CACHE_DIR is set: JAX reads that variable itself.
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  jax_bytes = -1 if bound is None else int(bound * JAX_SHARE)
  if jax_bytes >= 0 and importlib.util.find_spec("filelock") is None:
    # JAX's bounded cache locks its files with `filelock` and, without it, fails every read and write.
    logging.warning("the compilation cache's bound needs the filelock package (pip install filelock): unbounded")
    jax_bytes = -1
  _executables_budget = None if bound is None else bound - jax_bytes
  if bound is not None:
    _give_jax_entries_access_times(directory)
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", str(directory))
  jax.config.update("jax_compilation_cache_max_size", jax_bytes)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  monitoring.register_event_listener(_count)
  _enabled_dir = directory
  _trim(directory / "executables", _executables_budget)
  return directory


def _user(uid: int) -> str:
  try:
    return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
  except KeyError:
    return f"uid {uid}"


def _private_group(gid: int, uid: int) -> bool:
  """Whether group `gid` has no member but user `uid` (a user-private group, as umask 002 systems make): then its
  write bit lets no one else in (Debian's OpenSSH StrictModes rule)."""
  try:
    group, user = grp.getgrgid(gid), pwd.getpwuid(uid)
  except KeyError:
    return False
  primary = [p.pw_name for p in pwd.getpwall() if p.pw_gid == gid]
  members = set(primary) | set(group.gr_mem)
  return members == {user.pw_name}


def _unsafe(path, st: os.stat_result, *, ancestor: bool = False, owner_only: bool = False) -> str | None:
  """Why others could change what `path` (its stat `st`) holds, or None: owned by another user (root is trusted
  for directories, unless `owner_only`), or writable by others (a root-owned sticky `ancestor` such as /tmp
  excepted: no one else can rename or remove what we keep in it)."""
  euid = os.geteuid()
  if st.st_uid != euid and (owner_only or st.st_uid != 0):
    return f"{path} is owned by {_user(st.st_uid)}"
  mode = stat.S_IMODE(st.st_mode)
  if ancestor and st.st_mode & stat.S_ISVTX and st.st_uid == 0:
    return None
  if mode & 0o002:
    return f"{path} is writable by other users (mode {mode:04o})"
  if mode & 0o020 and not _private_group(st.st_gid, st.st_uid):
    return f"{path} is writable by its group (mode {mode:04o})"
  return None


def _make_private_dirs(directory: pathlib.Path) -> None:
  """Creates `directory` and its missing parents, each 0700."""
  missing = []
  for path in (directory, *directory.parents):
    if os.path.lexists(path):
      break
    missing.append(path)
  for path in reversed(missing):
    with contextlib.suppress(FileExistsError):
      os.mkdir(path, 0o700)


def _prepare(directory: pathlib.Path) -> pathlib.Path:
  """`directory` (created private where missing), its real path, once it and what it holds are safe to load from;
  Refused otherwise."""
  directory = pathlib.Path(os.path.abspath(directory))
  _make_private_dirs(directory)
  real = pathlib.Path(os.path.realpath(directory))
  fix = f"use a private directory (--compilation_cache_dir or ${ENV})"
  for path in (real, *real.parents, real / "executables"):  # nothing is written in a directory refused
    if path.name == "executables":
      _make_private_dirs(path)
    st = os.lstat(path)
    name = "it" if path == real else str(path)
    if not stat.S_ISDIR(st.st_mode):
      raise Refused(f"{name} is not a directory", fix)
    why = _unsafe(name, st, ancestor=path in real.parents)
    if why:
      mine = st.st_uid == os.geteuid()
      raise Refused(why, f"{f'chmod go-w {name} or ' if mine else ''}{fix}")
  for entry in os.scandir(real):  # JAX's entries (it loads them without asking)
    if entry.name.endswith(("-cache", "-atime")):
      with contextlib.suppress(FileNotFoundError):  # evicted meanwhile by another process
        why = _unsafe(pathlib.Path(entry.path), os.stat(entry.path), owner_only=True)
        if why:
          raise Refused(why, f"delete {real} (the next run refills it) or {fix}")
  return real


def _give_jax_entries_access_times(directory: pathlib.Path) -> None:
  """JAX's eviction reads a `KEY-atime` file beside every `KEY-cache` entry and fails without it; entries written
  while the cache had no bound have none: give them their modification time."""
  for entry in os.scandir(directory):
    if entry.name.endswith("-cache"):
      atime = pathlib.Path(entry.path[: -len("-cache")] + "-atime")
      with contextlib.suppress(OSError):
        if not atime.exists():
          fd = os.open(atime, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
          with os.fdopen(fd, "wb") as f:
            f.write(entry.stat().st_mtime_ns.to_bytes(8, "little"))


def _trim(folder: pathlib.Path, budget: int | None) -> None:
  """Removes the least recently used files of `folder` (oldest modification time first: a load touches its file)
  until what is left fits `budget` bytes; partial files of dead writers go first."""
  if budget is None:
    return
  now, files = time.time(), []
  with contextlib.suppress(OSError):
    for entry in os.scandir(folder):
      with contextlib.suppress(OSError):
        st = entry.stat(follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
          continue
        if entry.name.endswith(".tmp") and now - st.st_mtime > _STALE_TMP_SECONDS:
          os.unlink(entry.path)
          continue
        files.append((st.st_mtime_ns, entry.path, st.st_size))
  total = sum(size for _, _, size in files)
  for _, path, size in sorted(files):
    if total <= budget:
      break
    with contextlib.suppress(FileNotFoundError):
      os.unlink(path)
      logging.info(
        "compilation cache: removed %s (least recently used; the cache holds at most %d MiB)", path, budget // 2**20
      )
    total -= size


def _read_private(path: pathlib.Path) -> bytes | None:
  """The bytes of `path`, None when it does not exist; Refused when another user owns it or others can write it
  (checked on the open file, so it cannot be swapped between the check and the read)."""
  try:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
  except FileNotFoundError:
    return None
  with os.fdopen(fd, "rb") as f:
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
      raise Refused(f"{path} is not a regular file", "")
    why = _unsafe(path, st, owner_only=True)
    if why:
      raise Refused(why, "")
    return f.read()


def _pack(outputs, executable: bytes) -> bytes:
  header = json.dumps({"outputs": outputs, "size": len(executable)}, separators=(",", ":")).encode()
  return _MAGIC + header + b"\n" + executable


def _unpack(data: bytes):
  """(output tree description, JAX's executable bytes) of a `_pack`ed file; ValueError for anything else."""
  if not data.startswith(_MAGIC):
    raise ValueError("not a jaxcnn saved executable (or of another format version)")
  end = data.find(b"\n", len(_MAGIC))
  if end < 0:
    raise ValueError("truncated header")
  header = json.loads(data[len(_MAGIC) : end])
  executable = data[end + 1 :]
  if len(executable) != header["size"]:
    raise ValueError(f"truncated: {len(executable)} of {header['size']} bytes")
  return header["outputs"], executable


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
    state, sums = compiled_train_step(state, batch)
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
    try:
      data = _read_private(path)
    except Refused as e:
      logging.warning("not loading the saved executable: %s; compiling it again", e.reason)
      data = None
    except OSError as e:
      logging.warning("cannot read the saved executable %s (%s); compiling again", path, e)
      data = None
    if data is not None:
      try:
        outputs, executable = _unpack(data)
        out_tree = jax.tree.structure(_example_tree(outputs, arg_trees))
        # JAX's deserialiser (pickle-based): reached only for a file of ours in a directory only we can write.
        compiled = serialize_executable.deserialize_and_load(executable, in_tree, out_tree)
      except Exception as e:  # noqa: BLE001  (a damaged file is compiled again and replaced)
        logging.warning("cannot load the saved executable %s (%s: %s); compiling again", path, type(e).__name__, e)
      else:
        with contextlib.suppress(OSError):
          os.utime(path)  # recently used: the last to be trimmed
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
      with contextlib.suppress(FileExistsError):
        os.mkdir(path.parent, 0o700)
      fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
      with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(_pack(outputs, executable))
      os.replace(partial, path)  # whole files only: a process killed while writing leaves no half file behind
    except OSError as e:  # a full disk or a read-only cache costs the next process a compile, not this run
      logging.warning("cannot save the executable %s (%s)", path, e)
      with contextlib.suppress(OSError):
        partial.unlink()
      return compiled
    _counts[_SAVED] += 1
    _trim(path.parent, _executables_budget)
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
      repr(sorted((k, v) for k, v in jax.config.values.items() if _program_setting(k, v))),
      _source_digest(),
      repr(layers.fast_forms_in_use()),  # what the layers trace to: the fast-forms switch
      *(f"{jax.tree_util.keystr(p)} {x.shape} {x.dtype} {getattr(x, 'sharding', None)}" for p, x in paths),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _program_setting(name: str, value) -> bool:
  """Whether a JAX setting goes into the digest: every scalar one but the cache's own (where and how large the cache
  is leaves its programs unchanged)."""
  cache = name.startswith(("jax_compilation_cache", "jax_persistent_cache", "jax_enable_compilation_cache"))
  return isinstance(value, (bool, int, float, str, type(None))) and not cache


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
  """A JSON description of an output tree: subtrees shaped like an argument (the new train state) by the
  argument's index, tuples, lists and dicts (of string keys) by their parts; TypeError for any other node."""
  if treedef in arg_trees:
    return ("argument", arg_trees.index(treedef))
  if treedef.num_nodes == 1:
    return ("leaf",) if treedef.num_leaves == 1 else ("none",)
  kind, aux = treedef.node_data()
  if kind not in (tuple, list, dict):
    raise TypeError(f"output node {kind.__name__} is not a tuple, list, dict or an argument's tree")
  if kind is dict and not all(isinstance(k, str) for k in aux):
    raise TypeError("output dict keys that are not strings")
  return (
    kind.__name__,
    list(aux) if kind is dict else None,
    [_describe_tree(c, arg_trees) for c in treedef.children()],
  )


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
