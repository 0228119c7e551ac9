"""One run per workdir (jaxcnn/workdir_lock.py): a second run refuses at once, a gone holder is taken over."""

import json
import logging
import os
import socket
import subprocess
import time

import pytest
from conftest import FAKE_DEVICES, run_jaxcnn
from test_cli import assert_one_line_error, run_cli

from jaxcnn import workdir_lock


def _write_holder(workdir, **holder):
  (workdir / workdir_lock.LOCK_NAME).write_text(json.dumps({"started": time.time(), "num_processes": 1, **holder}))


def _ended_pid() -> int:
  process = subprocess.Popen(["true"])
  process.wait()
  return process.pid


def test_a_held_workdir_refuses_another_run_naming_the_holder(tmp_path):
  lock = workdir_lock.WorkdirLock.acquire(tmp_path)
  try:
    with pytest.raises(workdir_lock.WorkdirBusyError, match=f"in use by another run \\(pid {os.getpid()} on "):
      workdir_lock.WorkdirLock.acquire(tmp_path)
  finally:
    lock.release()
  assert (tmp_path / workdir_lock.LOCK_NAME).read_text() == ""  # released: no holder
  workdir_lock.WorkdirLock.acquire(tmp_path).release()


@pytest.mark.parametrize(
  "holder, why",
  [
    (lambda: {"host": socket.gethostname(), "pid": _ended_pid()}, "its process has ended"),
    (lambda: {"host": socket.gethostname(), "pid": os.getpid(), "start_ticks": 1}, "now belongs to another"),
    (lambda: {"host": "elsewhere", "pid": 1}, "no heartbeat for"),
  ],
)
def test_a_gone_holder_is_taken_over_with_a_warning(tmp_path, caplog, holder, why):
  _write_holder(tmp_path, **holder())
  old = time.time() - workdir_lock.STALE_SECONDS - 5
  os.utime(tmp_path / workdir_lock.LOCK_NAME, (old, old))
  with caplog.at_level(logging.WARNING):
    lock = workdir_lock.WorkdirLock.acquire(tmp_path)
  lock.release()
  assert any("taking over" in r.getMessage() and why in r.getMessage() for r in caplog.records), caplog.text


def test_a_holder_on_another_host_with_a_fresh_heartbeat_keeps_the_workdir(tmp_path):
  _write_holder(tmp_path, host="elsewhere", pid=1)  # modified just now: its heartbeat is fresh
  with pytest.raises(workdir_lock.WorkdirBusyError, match="pid 1 on elsewhere"):
    workdir_lock.WorkdirLock.acquire(tmp_path)


def _final_record(workdir) -> dict:
  record = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[-1])
  return {k: v for k, v in record.items() if k not in ("images_per_sec", "epoch_seconds")}


@pytest.mark.slow
def test_a_second_launch_on_a_busy_workdir_exits_at_once_and_the_first_run_is_unharmed(tmp_path, tiny_args):
  # Long enough that the first run still holds the workdir when the second has started (a second process takes a
  # few seconds to import; three tiny epochs from a warm compilation cache ended before it once).
  args = [*tiny_args, "--config.num_epochs=15"]
  workdir = tmp_path / "run"
  first = run_jaxcnn(f"--workdir={workdir}", *args, devices=FAKE_DEVICES, background=True)
  lock_file = workdir / workdir_lock.LOCK_NAME
  deadline = time.monotonic() + 300
  while not (lock_file.exists() and lock_file.read_text()) and first.poll() is None and time.monotonic() < deadline:
    time.sleep(0.1)
  second = run_cli(f"--workdir={workdir}", *args)
  still_training = first.poll() is None
  stdout, stderr = first.communicate(timeout=600)
  assert first.returncode == 0, stderr
  assert_one_line_error(second, f"{workdir} is in use by another run (pid {first.pid} on ")
  assert still_training and "epoch" not in second.stdout, second.stdout
  alone = run_cli(f"--workdir={tmp_path / 'alone'}", *args)
  assert alone.returncode == 0, alone.stderr
  assert _final_record(workdir) == _final_record(tmp_path / "alone")
  assert lock_file.read_text() == ""
