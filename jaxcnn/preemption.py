"""Stop requests: SIGTERM/SIGINT (preemption, Ctrl-C) ask the training loop to checkpoint and exit."""

import signal
import threading

import numpy as np


class StopRequests:
  """Entered around the loop: catches SIGTERM/SIGINT so that the loop saves at a step boundary and exits.

  The request travels into the train step with the batch (`flags`): each example carries its process's
  flag and the step reduces it over every device (`pmax`), so every process reads the same agreed flag
  from the same step's outputs and all of them stop, and save, at the same step, without a collective of
  their own. `signal_name` names the first signal received. (A second signal, or a step stuck after the
  first, is the watchdog's: jaxcnn/watchdog.py.)
  """

  def __init__(self):
    self.signal_name = None
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
    self.signal_name = self.signal_name or signal.Signals(signum).name

  def flags(self, num_examples: int) -> np.ndarray:
    """This process's request, once per example of its share of the next batch (1 = stop)."""
    return np.full((num_examples,), self.signal_name is not None, np.int32)
