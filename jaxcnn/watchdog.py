"""A progress watchdog: a run that stops making progress ends, non-zero, saying where it stood.

A process of a multi-process run that waits in a collective for a peer that is alive but stuck (paused,
wedged in a driver, starved) waits forever: the peer keeps its jax.distributed heartbeat, so nothing
notices, and SIGTERM's Python handler never runs while the main thread waits inside XLA. The watchdog is a
thread that expects a train or eval step to complete within a bound. When none does, it writes the Python
stacks of all threads (`faulthandler`) and where the run stood, then ends the process with EXIT_CODE and a
one-line message; its peers, waiting in the same collective, do the same (their own watchdogs) or are
ended by jax.distributed once this process is gone.

Bounds: `first_step_timeout` from entering until the first step completes (data loading, the checkpoint
manager's and the restore's barriers with other processes, compiling) and while an eval step may be compiling
(see `expect_compile`), `step_timeout` between completed steps after that; checkpoint saves and host work
between steps count against the same bound. Signals reach the watchdog through
`signal.set_wakeup_fd`, written by the C-level handler even while the main thread is stuck: after a
SIGTERM/SIGINT a step must complete within `signal_timeout` (the loop then stops at a step boundary, as
usual), and a second SIGTERM/SIGINT ends the process at once.
"""

import faulthandler
import os
import select
import signal
import socket
import sys
import threading
import time

import jax

EXIT_CODE = 124  # as coreutils' timeout: the process was ended because it did not finish in time
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Watchdog:
  """Ends the process when no step completes in time; call `progress(where)` after every completed step.

  Entered (in the main thread) around the training loop, an evaluation or a prediction. A bound <= 0 disables it.
  """

  def __init__(self, step_timeout: float, first_step_timeout: float, signal_timeout: float = 30.0, label: str = ""):
    self.step_timeout = step_timeout
    self.first_step_timeout = first_step_timeout
    self.signal_timeout = signal_timeout
    self.label = label  # e.g. "process 1 of 2: ", the message's prefix
    self._lock = threading.Lock()
    self._deadline = None  # time.monotonic() by which a step must complete; None: no bound
    self._reason = ""
    self._where = "before the first step"
    self._signal = None  # name of the first SIGTERM/SIGINT, until a step completes after it
    self._signals_seen = 0
    self._closed = False
    self._wakeup_read, self._wakeup_write = socket.socketpair()
    self._thread = threading.Thread(target=self._run, name="jaxcnn-watchdog", daemon=True)
    self._previous_wakeup_fd = -1

  @classmethod
  def from_config(cls, config) -> "Watchdog":
    """The bounds of `config` (step_timeout_seconds, first_step_timeout_seconds); messages name the process
    when there are several."""
    label = f"process {jax.process_index()} of {jax.process_count()}: " if jax.process_count() > 1 else ""
    return cls(
      config.step_timeout_seconds,
      config.first_step_timeout_seconds,
      signal_timeout=min(30.0, config.step_timeout_seconds or 30.0),
      label=label,
    )

  def __enter__(self):
    self._wakeup_write.setblocking(False)
    if threading.current_thread() is threading.main_thread():  # only the main thread may set it
      self._previous_wakeup_fd = signal.set_wakeup_fd(self._wakeup_write.fileno(), warn_on_full_buffer=False)
    self.expect_compile("before the first step")
    self._thread.start()
    return self

  def __exit__(self, *exc):
    if threading.current_thread() is threading.main_thread():
      signal.set_wakeup_fd(self._previous_wakeup_fd)
    with self._lock:
      self._closed = True
    self._wakeup_write.send(b"\0")
    self._thread.join()
    self._wakeup_read.close()
    self._wakeup_write.close()

  def _arm(self, bound: float, where: str, reason: str) -> None:
    with self._lock:
      self._where = where
      if self._signal is None:  # after a signal its short bound stands until a step completes
        self._deadline = time.monotonic() + bound if bound > 0 else None
        self._reason = reason.format(bound=bound)

  def expect_compile(self, where: str) -> None:
    """The next step may compile (the first train step, a first eval step): the long bound applies to it."""
    self._arm(self.first_step_timeout, where, "no step completed within first_step_timeout_seconds={bound:g}")

  def progress(self, where: str) -> None:
    """A step completed; `where` (e.g. "train step 120") names the run's position for the message."""
    with self._lock:
      self._signal = None
    self._arm(self.step_timeout, where, "no train or eval step completed within step_timeout_seconds={bound:g}")

  def _on_signal(self, signum: int) -> None:
    if signum not in _STOP_SIGNALS:
      return
    name = signal.Signals(signum).name
    with self._lock:
      self._signals_seen += 1
      if self._signals_seen > 1:
        self._exit(f"second stop signal ({name}) at {self._where}; exiting at once", 128 + signum, dump=False)
      self._signal = name
      self._deadline = time.monotonic() + self.signal_timeout
      self._reason = f"no step completed within {self.signal_timeout:g} s of {name}"

  def _run(self) -> None:
    while True:
      with self._lock:
        if self._closed:
          return
        remaining = None if self._deadline is None else self._deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
          self._exit(
            f"{self._reason} (last: {self._where}); what it waits for (a peer process, a collective, I/O) "
            f"is stuck, stacks of all threads above",
            EXIT_CODE,
            dump=True,
          )
      ready, _, _ = select.select([self._wakeup_read], [], [], 1.0 if remaining is None else min(remaining, 1.0))
      if ready:
        for signum in self._wakeup_read.recv(64):
          self._on_signal(signum)

  def _exit(self, message: str, code: int, dump: bool) -> None:
    """Writes the stacks (when asked) and the one-line message to stderr, then ends the process."""
    try:
      sys.stdout.flush()
      if dump:
        sys.stderr.write(f"jaxcnn: watchdog: {self.label}stacks of all threads:\n")
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
      sys.stderr.write(f"jaxcnn: error: {self.label}{message}\n")
      sys.stderr.flush()
    finally:
      os._exit(code)
