"""The run-folder lock: a second writer is refused naming the holder; a killed holder's lock is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from urllm.lock import LockError, RunLock, holder_of

HOLD = """
import sys, time
from urllm.lock import RunLock
with RunLock(sys.argv[1], "urllm pipeline --config x.yaml"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder_process(run_dir):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_is_refused_naming_the_holder(tmp_path):
    proc = _holder_process(tmp_path / "run")
    try:
        with pytest.raises(LockError) as exc:
            RunLock(tmp_path / "run", "urllm evaluate").acquire()
        msg = str(exc.value)
        assert f"pid {proc.pid}" in msg and "urllm pipeline --config x.yaml" in msg and "started 20" in msg
        assert "\n" not in msg
        assert holder_of(tmp_path / "run")["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_lock_of_a_killed_process_is_taken_over(tmp_path, caplog):
    proc = _holder_process(tmp_path / "run")
    os.kill(proc.pid, signal.SIGKILL)  # kill -9: no clean-up, the lock file stays
    proc.wait()
    assert json.loads((tmp_path / "run" / ".lock").read_text())["pid"] == proc.pid
    with caplog.at_level("WARNING"), RunLock(tmp_path / "run", "urllm pipeline"):
        assert holder_of(tmp_path / "run")["pid"] == os.getpid()
        assert json.loads((tmp_path / "run" / ".lock").read_text())["pid"] == os.getpid()
    assert f"taking over the stale lock of pid {proc.pid}" in caplog.text
    assert not (tmp_path / "run" / ".lock").exists()  # released


def test_stale_lock_file_of_a_dead_pid_is_taken_over(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(json.dumps({"pid": dead.pid, "command": "old", "started": "then"}))
    with caplog.at_level("WARNING"), RunLock(tmp_path):
        pass
    assert f"stale lock of pid {dead.pid}" in caplog.text


def test_reentrant_in_one_process_and_released(tmp_path):
    with RunLock(tmp_path, "outer"):
        with RunLock(tmp_path, "inner"):  # the pipeline's finetune stage inside the pipeline
            pass
        assert (tmp_path / ".lock").exists()  # the outer holder still has it
    assert not (tmp_path / ".lock").exists()
    with RunLock(tmp_path):  # free again
        pass


def test_pipeline_refuses_a_locked_run_dir(tmp_path, caplog):
    from urllm.cli import main

    run = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"run_dir: {run}\npipeline:\n  systems: [popularity]\n")
    proc = _holder_process(run)
    try:
        start = time.perf_counter()
        assert main(["pipeline", "--config", str(cfg), "--stages", "prepare"]) == 2
        assert time.perf_counter() - start < 5
        assert f"is in use by pid {proc.pid}" in caplog.text
    finally:
        proc.kill()
        proc.wait()
