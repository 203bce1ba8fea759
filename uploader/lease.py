"""One run at a time per state file: a lease that dies with its holder.

Two uploads sharing a state file at once would both send what neither has recorded yet
(a nightly job whose previous run is still going). The lease is an exclusive lock on
STATE.lock held for the whole run: the operating system releases it when its holder ends,
however it ends (kill -9 included), so a lock never outlives its run and never needs a hand
to clear. The file says who holds it, for the message the next run shows.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType

from uploader.errors import CheckpointError

# How often a run that waits for the lease tries again (and looks whether it was stopped).
RETRY_S = 0.5


class RunLease:
    """`with RunLease(state):` holds the lease of that state file, or raises CheckpointError
    (kind "busy") naming the holder. With `wait`, waits for it instead, telling `on_wait`
    once who holds it; `stop` ends the wait (then "busy" too)."""

    def __init__(
        self,
        state: str,
        *,
        wait: bool = False,
        on_wait: Callable[[str], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.state = state
        self.path = f"{state}.lock"
        self.wait = wait
        self.on_wait = on_wait
        self.stop = stop or threading.Event()
        self._fd: int | None = None

    def __enter__(self) -> RunLease:
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise CheckpointError(
                f"state file {self.state}: cannot create its folder {folder} ({exc.strerror}); "
                "give --state FILE in a folder that can be created or exists",
                kind="unwritable",
            ) from exc
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise CheckpointError(
                f"state file {self.state}: cannot create its lock {self.path} ({exc.strerror}); "
                "check the disk and its permissions, or give --state FILE on a writable disk",
                kind="unwritable",
            ) from exc
        told = False
        while not try_lock(fd):
            holder = holder_of(fd)
            if not self.wait or self.stop.is_set():
                os.close(fd)
                waited = " (stopped waiting)" if self.wait else ""
                raise CheckpointError(
                    f"state file {self.state} is in use by another run{waited}: {holder}; "
                    "nothing was sent. Two runs on one state file would send events twice: "
                    "let that run end, or give --wait to wait for it",
                    kind="busy",
                )
            if not told and self.on_wait is not None:
                self.on_wait(holder)
                told = True
            time.sleep(RETRY_S)
        claim(fd)
        self._fd = fd
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            release(self._fd)
            self._fd = None


# The lock itself, for a state file here and a Spark state directory on a disk
# (spark/state.py): an exclusive flock on an open file that records its holder.


def try_lock(fd: int) -> bool:
    """Take the lock of this open file, or say that another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def holder_record() -> dict[str, object]:
    """Who holds a lease: this process, its host, since when."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


def claim(fd: int) -> None:
    """Write this process into a lock file it holds."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder_record()).encode(), 0)


def release(fd: int) -> None:
    os.ftruncate(fd, 0)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def holder_of(fd: int) -> str:
    """The holder a lock file records, as a message says it."""
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        record = {}
    return describe_holder(record)


def describe_holder(record: object) -> str:
    if not isinstance(record, dict) or not record:
        return "a run that is starting"
    return f"pid {record.get('pid')} on {record.get('host')}, started {record.get('started')}"
