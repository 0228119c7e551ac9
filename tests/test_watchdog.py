"""The progress watchdog in a real subprocess: a stalled main thread, signals while stuck."""

import os
import re
import signal
import subprocess
import textwrap
import time

import pytest
from conftest import FAKE_DEVICES, run_jaxcnn

from jaxcnn import watchdog

# A "run" whose third step never completes: the main thread sleeps where a stuck collective would wait.
STALLED_RUN = textwrap.dedent("""
    import signal, sys, time
    from jaxcnn import watchdog

    def stuck_in_a_collective():
      time.sleep(3600)

    signal.signal(signal.SIGTERM, lambda *_: None)  # as the training loop's stop handler: only sets a flag
    with watchdog.Watchdog(step_timeout=float(sys.argv[1]), first_step_timeout=30, signal_timeout=2,
                           label="process 0 of 1: ") as dog:
      for step in (1, 2):
        dog.progress(f"train step {step}")
        print("step", step, "done", flush=True)
      stuck_in_a_collective()
""")


def _start(step_timeout: float) -> subprocess.Popen:
  return run_jaxcnn(str(step_timeout), code=STALLED_RUN, background=True, stderr=subprocess.STDOUT)


def _wait_for_progress(proc: subprocess.Popen) -> None:
  for line in proc.stdout:
    if line.startswith("step 2 done"):
      return
  raise AssertionError("the run never made progress")


def test_a_stalled_step_ends_the_process_with_all_stacks_and_a_one_line_message():
  proc = _start(step_timeout=2)
  _wait_for_progress(proc)
  started = time.time()
  output = proc.stdout.read()
  assert proc.wait(timeout=30) == watchdog.EXIT_CODE
  assert time.time() - started < 15
  assert "stacks of all threads" in output
  assert "in stuck_in_a_collective" in output  # the main thread's stack
  assert "jaxcnn-watchdog" in output or "Thread 0x" in output  # every thread, the watchdog's own included
  last = output.strip().splitlines()[-1]
  assert last.startswith(
    "jaxcnn: error: process 0 of 1: no train or eval step completed within step_timeout_seconds=2 (last: train step 2)"
  ), last


def test_sigterm_while_a_step_is_stuck_ends_the_process_within_the_signal_bound():
  proc = _start(step_timeout=600)
  _wait_for_progress(proc)
  proc.send_signal(signal.SIGTERM)
  started = time.time()
  output = proc.stdout.read()
  assert proc.wait(timeout=30) == watchdog.EXIT_CODE
  assert time.time() - started < 15
  assert "no step completed within 2 s of SIGTERM (last: train step 2)" in output.strip().splitlines()[-1]


def test_a_second_sigterm_ends_the_process_at_once():
  proc = _start(step_timeout=600)
  _wait_for_progress(proc)
  proc.send_signal(signal.SIGTERM)
  time.sleep(0.3)
  proc.send_signal(signal.SIGTERM)
  output = proc.stdout.read()
  assert proc.wait(timeout=30) == 128 + signal.SIGTERM
  assert output.strip().splitlines()[-1] == (
    "jaxcnn: error: process 0 of 1: second stop signal (SIGTERM) at train step 2; exiting at once"
  )


@pytest.mark.slow
def test_a_training_run_stuck_writing_its_workdir_ends_with_the_watchdog(tiny_args, tmp_path):
  """A real run whose metrics file blocks its writer (a FIFO nobody reads, as a file on a network mount that
  stopped answering): the watchdog ends it after the first epoch's validation, with the stacks."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  os.mkfifo(workdir / "metrics.jsonl")
  result = run_jaxcnn(
    *tiny_args, f"--workdir={workdir}", "--config.step_timeout_seconds=10", devices=FAKE_DEVICES, timeout=300
  )
  assert result.returncode == watchdog.EXIT_CODE, result.stderr[-3000:]
  assert "stacks of all threads" in result.stderr
  assert re.search(r"reporting\.py\", line \d+ in write", result.stderr), result.stderr[-3000:]  # the stuck open()
  assert (
    result.stderr.strip()
    .splitlines()[-1]
    .startswith(
      "jaxcnn: error: no train or eval step completed within step_timeout_seconds=10 (last: validation eval step 1)"
    )
  ), result.stderr[-3000:]
  assert "epoch 1/" in result.stderr  # it trained: the stall came after progress, not before it
