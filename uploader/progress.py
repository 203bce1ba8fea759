"""How a run reports progress to the shell that started it: snapshots, not a progress bar.

The core calls an observer with a `Progress` snapshot as it goes (after each chunk read, and
a few times a second while uploading), with `Stopping` when asked to stop, and with
`SandboxStarted` when it started a sandbox to upload to. The shells
draw bars, log lines or widgets from them (console.py); the core never imports tqdm.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    rows_read: int
    bytes_read: int  # of the inputs as stored (compressed bytes for a .gz)
    bytes_total: int | None  # None: some input has no size on disk (an in-memory table)
    rows_total: int | None  # None: some input does not say before it is read (CSV)
    events_sent: int = 0
    events_rejected: int = 0
    requests: int = 0
    retries: int = 0
    events_settled: int = 0  # sent, or refused by the API: the ones that need no more work
    # Events this run will send: exact once reading is done, until then estimated from the
    # share of the input read so far; None while nothing is known.
    events_expected: int | None = None
    reading_done: bool = False

    @property
    def read_share(self) -> float | None:
        """How much of the input was read, 0..1, if that can be told."""
        if self.reading_done:
            return 1.0
        if self.bytes_total:
            return min(self.bytes_read / self.bytes_total, 1.0)
        if self.rows_total:
            return min(self.rows_read / self.rows_total, 1.0)
        return None


@dataclass(frozen=True)
class Stopping:
    """A stop was asked for (first Ctrl-C): the requests in flight are finishing."""


@dataclass(frozen=True)
class SandboxStarted:
    """The built-in sandbox this upload goes to is listening."""

    base_url: str


@dataclass(frozen=True)
class WaitingForLease:
    """Another run holds the state file; this one waits for it (--wait)."""

    holder: str


Event = Progress | Stopping | SandboxStarted | WaitingForLease
Observer = Callable[[Event], None]


class ReadMeter:
    """How far reading has come across all the inputs."""

    def __init__(self, sources: Sequence[Any]) -> None:
        sizes = [s.size for s in sources]
        rows = [s.rows for s in sources]
        self.bytes_total = None if None in sizes else sum(sizes)
        self.rows_total = None if None in rows else sum(rows)
        self.done: dict[str, int] = {}

    def note(self, source_name: str, bytes_done: int | None) -> None:
        self.done[source_name] = bytes_done or 0

    @staticmethod
    def expected(queued: int, share: float | None, done: bool) -> int | None:
        """Events to send: those queued so far, scaled by the share of the input read."""
        if done:
            return queued
        if not share or not queued:
            return None
        return max(queued, round(queued / share))

    @property
    def bytes_read(self) -> int:
        return sum(self.done.values())
