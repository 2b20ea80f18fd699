"""One writer per run folder: ``<run_dir>/.lock`` names the process that writes to it.

The pipeline, ``urllm evaluate`` and a fine-tune take the lock before writing; a second writer gets a
one-line :class:`LockError` naming the holder (pid, command, start time). The holder keeps the file open
under ``flock``, which the kernel releases when the process ends however it ends, so a lock left by a
killed process (``kill -9``) is *stale*: the next writer takes it over, with a warning naming the dead
holder. A pid reused by a new process cannot keep a dead writer's lock alive.

The lock is re-entrant within one process (the pipeline's finetune stage runs the fine-tune in-process)
and is taken by the main process only under ``accelerate launch`` (``RANK`` 0).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from urllm.run_layout import LOCK_FILE

logger = logging.getLogger(__name__)

_HELD: dict[Path, int] = {}  # lock file -> re-entry depth in this process


class LockError(RuntimeError):
    """The run folder is being written by another process."""


def _start_time(pid: int) -> str:
    """The process start time in clock ticks since boot ('' where /proc is not available)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name may contain spaces


def describe(holder: dict) -> str:
    return (
        f"pid {holder.get('pid')} on {holder.get('host')} ({holder.get('command', '?')!r}, "
        f"started {holder.get('started', '?')})"
    )


def is_main_process() -> bool:
    """False on the non-zero ranks of ``accelerate launch`` / torchrun."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0


class RunLock:
    """``with RunLock(run_dir, "urllm pipeline"):`` holds ``<run_dir>/.lock`` for the block.

    The holder keeps the file open under ``flock``; the kernel drops a dead process's flock, which is
    what makes its lock stale (the pid and start time in the file are for the messages)."""

    def __init__(self, run_dir: str | Path, command: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.command = command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        self.fd: int | None = None
        self.nested = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        import fcntl

        if not is_main_process():
            return
        key = str(self.path.absolute())
        if key in _HELD:
            _HELD[key] += 1
            self.nested = True
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_fd(fd)
                os.close(fd)
                raise LockError(
                    f"{self.run_dir} is in use by {describe(holder or {})}; wait for it to finish or use "
                    f"another run_dir (lock file {self.path})"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder unlinked it between our open and flock: take the new file
                os.close(fd)
                continue
            old = _read_fd(fd)
            if old and old.get("pid"):
                logger.warning(
                    "%s: taking over the stale lock of %s (it is no longer running)",
                    self.run_dir,
                    describe(old),
                )
            me = {
                "pid": os.getpid(),
                "pid_start": _start_time(os.getpid()),
                "host": socket.gethostname(),
                "command": self.command,
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
            self.fd = fd
            _HELD[key] = 1
            return
        raise LockError(f"{self.path}: could not take the lock (it keeps being replaced)")

    def release(self) -> None:
        key = str(self.path.absolute())
        if self.nested:
            self.nested = False
            _HELD[key] -= 1
            return
        if self.fd is None:
            return
        _HELD.pop(key, None)
        try:
            self.path.unlink(missing_ok=True)  # while still holding the flock (see acquire)
        finally:
            os.close(self.fd)
            self.fd = None


def _read_fd(fd: int) -> dict | None:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace")
        return json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None


def holder_of(run_dir: str | Path) -> dict | None:
    """Who holds ``run_dir``'s lock now (None: nobody)."""
    import fcntl

    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_fd(fd) or {}
    finally:
        os.close(fd)
    return None
