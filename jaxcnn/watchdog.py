"""A progress watchdog: a run that stops making progress ends, non-zero, saying where it stood.

A process of a multi-process run that waits in a collective for a peer that is alive but stuck (paused,
wedged in a driver, starved) waits forever: the peer keeps its jax.distributed heartbeat, so nothing
notices. The watchdog is a daemon thread that expects a train or eval step to complete within a bound.
When none does, it writes the Python stacks of all threads (`faulthandler`) and where the run stood, then
ends the process with EXIT_CODE and a one-line message; its peers, waiting in the same collective, do
the same (their own watchdogs) or are ended by jax.distributed once this process is gone.

The bounds: `first_step_timeout` for a step that may compile (the first train step, the first eval step
of a run), `step_timeout` between completed steps after that. Checkpoint saves and evaluation between
steps count against the same bound. After SIGTERM/SIGINT the run has `signal_timeout` to complete a
step (it then stops at the step boundary as usual); a second signal ends the process at once.
"""

import faulthandler
import os
import signal
import sys
import threading
import time

EXIT_CODE = 124  # as coreutils' timeout: the process was ended because it did not finish in time


class StalledError(RuntimeError):
  """Not raised: names the condition in the one-line message (the main thread may be stuck in C code)."""


class Watchdog:
  """Ends the process when no step completes in time. `progress()` after every completed step.

  Use as a context manager around the loop; `timeout <= 0` disables a bound.
  """

  def __init__(self, step_timeout: float, first_step_timeout: float, signal_timeout: float = 30.0,
               label: str = ""):
    self.step_timeout = step_timeout
    self.first_step_timeout = first_step_timeout
    self.signal_timeout = signal_timeout
    self.label = label  # e.g. "process 1 of 2: " (prefix of the message)
    self._lock = threading.Lock()
    self._wake = threading.Condition(self._lock)
    self._deadline = None  # time.monotonic() by which a step must complete; None: no bound
    self._bound = 0.0  # the bound that set _deadline (for the message)
    self._where = "before the first step"
    self._signal = None  # name of the first SIGTERM/SIGINT received
    self._closed = False
    self._thread = threading.Thread(target=self._run, name="jaxcnn-watchdog", daemon=True)

  def __enter__(self):
    self.expect_compile("before the first step")
    self._thread.start()
    return self

  def __exit__(self, *exc):
    with self._lock:
      self._closed = True
      self._wake.notify()
    self._thread.join()

  def _arm(self, bound: float, where: str) -> None:
    with self._lock:
      self._where = where
      if self._signal is None:  # after a signal the short bound stands until a step completes
        self._deadline = time.monotonic() + bound if bound > 0 else None
        self._bound = bound
      self._wake.notify()

  def expect_compile(self, where: str) -> None:
    """The next step may compile (first step, first eval): the long bound applies until it completes."""
    self._arm(self.first_step_timeout, where)

  def progress(self, where: str) -> None:
    """A step completed; `where` (e.g. "train step 120, epoch 1") names the run's position for the message."""
    with self._lock:
      self._signal_grace_over()
    self._arm(self.step_timeout, where)

  def _signal_grace_over(self) -> None:
    if self._signal is not None:
      self._signal = "handled"  # a step completed after the signal: the loop stops at its boundary

  def signal_received(self, name: str) -> None:
    """Called from the SIGTERM/SIGINT handler: the first arms the short bound, a second ends the process."""
    with self._lock:
      if self._signal is not None:
        self._exit(f"second {name} received at {self._where}; exiting at once", dump=False)
      self._signal = name
      self._deadline = time.monotonic() + self.signal_timeout
      self._bound = self.signal_timeout
      self._wake.notify()

  def _run(self) -> None:
    with self._lock:
      while not self._closed:
        if self._deadline is None:
          self._wake.wait()
          continue
        remaining = self._deadline - time.monotonic()
        if remaining > 0:
          self._wake.wait(remaining)
          continue
        if self._signal not in (None, "handled"):
          reason = f"no step completed within {self._bound:g} s of {self._signal}"
        else:
          reason = f"no train or eval step completed within {self._bound:g} s"
        self._exit(f"{reason} (last: {self._where}); a peer process or a collective is stuck. "
                   "Stacks of all threads above", dump=True)

  def _exit(self, message: str, dump: bool) -> None:
    """Writes the stacks (when asked) and the one-line message to stderr, then ends the process."""
    stream = sys.stderr
    try:
      sys.stdout.flush()
      if dump:
        stream.write(f"jaxcnn: watchdog: {self.label}stacks of all threads:\n")
        stream.flush()
        faulthandler.dump_traceback(file=stream, all_threads=True)
      stream.write(f"jaxcnn: error: {self.label}{message}\n")
      stream.flush()
    finally:
      os._exit(EXIT_CODE if dump else 128 + signal.SIGTERM)
