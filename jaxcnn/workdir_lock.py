"""One run per workdir: a training run holds WORKDIR/run.lock from before it writes anything there to its end.

Two launches on one workdir (a shell history, a scheduler's requeue while the first job still runs) would
otherwise both write checkpoints into one folder. The lock is an exclusive `flock` on WORKDIR/run.lock, which
the kernel releases when its process ends however it ends, plus the file's contents: the holder's host, pid,
process start time and peers, and a heartbeat (the file's modification time, renewed every HEARTBEAT_SECONDS).
The contents serve where `flock` does not reach: a holder on another host sharing the workdir over a network
filesystem counts as alive while its heartbeat is younger than STALE_SECONDS. A holder that is gone (its pid
dead or reused on this host, or its heartbeat stale on another) is taken over with a warning. An empty file
means no holder. In a multi-process run, process 0 holds the lock for all its peers (they share one workdir).
"""

import contextlib
import fcntl
import json
import os
import pathlib
import socket
import threading
import time

from absl import logging

LOCK_NAME = "run.lock"
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 120.0  # a holder on another host is gone after this long without a heartbeat


class WorkdirBusyError(ValueError):
  """Another run holds the workdir."""


def _start_ticks(pid: int) -> int | None:
  """The process's start time in clock ticks since boot (Linux /proc), None where there is no such process: with
  the pid, it names one process even after the pid is reused."""
  try:
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
  except OSError:
    return None
  return int(stat.rsplit(")", 1)[1].split()[19])


def _describe(holder: dict) -> str:
  started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder.get("started", 0)))
  peers = holder.get("num_processes", 1)
  return f"pid {holder.get('pid')} on {holder.get('host')}, started {started}" + (
    f", process 0 of {peers}" if peers > 1 else ""
  )


def _gone(holder: dict, heartbeat_age: float) -> str | None:
  """Why the holder named in a lock file no longer runs, or None if it may still run."""
  if "unreadable" in holder:
    return "the lock file was left half written"
  if holder.get("host") == socket.gethostname():
    ticks = _start_ticks(int(holder.get("pid", -1)))
    if ticks is None:
      return "its process has ended"
    if ticks != holder.get("start_ticks", ticks):
      return "its pid now belongs to another process"
    return None
  if heartbeat_age > STALE_SECONDS:
    return f"no heartbeat for {heartbeat_age:.0f} s (more than {STALE_SECONDS:.0f} s)"
  return None


class WorkdirLock:
  """The lock of one workdir, held from `acquire` to `release`."""

  def __init__(self, path: pathlib.Path, fd: int):
    self.path, self._fd = path, fd
    self._stop = threading.Event()
    self._heartbeat = threading.Thread(target=self._beat, name="jaxcnn-workdir-lock", daemon=True)
    self._heartbeat.start()

  @classmethod
  def acquire(cls, workdir: pathlib.Path, num_processes: int = 1) -> "WorkdirLock":
    """Takes WORKDIR/run.lock, or raises WorkdirBusyError naming the run that holds it."""
    path = pathlib.Path(workdir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        raise WorkdirBusyError(_busy(workdir, _read(fd))) from None
      holder = _read(fd)
      if holder:
        why = _gone(holder, time.time() - os.fstat(fd).st_mtime)
        if why is None:  # on another host, beating: flock does not reach across this filesystem
          raise WorkdirBusyError(_busy(workdir, holder))
        logging.warning("taking over %s from %s: %s", path, _describe(holder), why)
      _write(
        fd,
        {
          "host": socket.gethostname(),
          "pid": os.getpid(),
          "start_ticks": _start_ticks(os.getpid()),
          "started": time.time(),
          "num_processes": num_processes,
        },
      )
    except BaseException:
      os.close(fd)  # closing releases the flock
      raise
    return cls(path, fd)

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_SECONDS):
      with contextlib.suppress(OSError):
        os.utime(self._fd)

  def release(self) -> None:
    """Empties the file (no holder) and releases the flock."""
    self._stop.set()
    self._heartbeat.join()
    with contextlib.suppress(OSError):
      os.ftruncate(self._fd, 0)
    os.close(self._fd)


def _busy(workdir, holder: dict) -> str:
  who = _describe(holder) if holder else "a run that has not written its name yet"
  return f"{workdir} is in use by another run ({who}); wait for it to end, or use another --workdir"


def _read(fd: int) -> dict:
  os.lseek(fd, 0, os.SEEK_SET)
  text = os.read(fd, 1 << 16).decode(errors="replace").strip()
  try:
    return json.loads(text) if text else {}
  except json.JSONDecodeError:
    return {"unreadable": text[:80]}  # a torn write: its writer held the flock, which is ours now


def _write(fd: int, holder: dict) -> None:
  os.ftruncate(fd, 0)
  os.lseek(fd, 0, os.SEEK_SET)
  os.write(fd, (json.dumps(holder) + "\n").encode())
  os.fsync(fd)


@contextlib.contextmanager
def hold(workdir: pathlib.Path):
  """The workdir's lock for the block, held by process 0 for a multi-process run; every process raises
  WorkdirBusyError when it is held by another run."""
  import jax
  import numpy as np
  from jax.experimental import multihost_utils

  lock, error = None, None
  if jax.process_index() == 0:
    try:
      lock = WorkdirLock.acquire(workdir, jax.process_count())
    except WorkdirBusyError as e:
      error = e
  if jax.process_count() > 1:
    refused = bool(multihost_utils.broadcast_one_to_all(np.int32(error is not None)))
    if refused and error is None:
      error = WorkdirBusyError(f"{workdir} is in use by another run (process 0 names it)")
  if error is not None:
    raise error
  try:
    yield lock
  finally:
    if lock is not None:
      lock.release()
