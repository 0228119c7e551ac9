"""Stop requests: SIGTERM/SIGINT (preemption, Ctrl-C) ask the training loop to checkpoint and exit."""

import signal
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils


class StopRequests:
  """Entered around the loop: catches SIGTERM/SIGINT so that the loop saves at the next step boundary.

  `should_stop(step)` says whether to stop after `step`; `signal_name` names the signal received. In a
  multi-process run the processes agree on stopping through an all-gather every `sync_every` steps, so
  that all of them save the same step together.
  """

  def __init__(self, sync_every: int):
    self.signal_name = None
    self.sync_every = sync_every if jax.process_count() > 1 else 1
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def _handle(self, signum, frame):
    del frame
    self.signal_name = signal.Signals(signum).name

  def should_stop(self, step: int) -> bool:
    if step % self.sync_every:
      return False
    if jax.process_count() == 1:
      return self.signal_name is not None
    return bool(np.any(multihost_utils.process_allgather(np.int32(self.signal_name is not None))))
