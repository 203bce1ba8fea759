"""The resume plan: what earlier runs did with each input, settled before any row is read.

For every input an upload either skips it (delivered before), resumes it (rows already
delivered or refused are not sent again), or starts it afresh. The plan is one immutable
value handed to the reader: which inputs to read, and per input which rows are done and
which content keys were delivered. `decide` is the policy, apart from the state file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from uploader.checkpoint import FileRecord
from uploader.errors import CheckpointError
from uploader.events import Events
from uploader.inputs import Source
from uploader.rowsets import RowSet


@dataclass(frozen=True)
class Decision:
    """What to do with one input: "skip" it (with why), "resume" `record`, or start it
    "new"; `forget` lists records of it to drop first."""

    action: str
    record: FileRecord | None = None
    forget: tuple[int, ...] = ()
    why: str = ""


def decide(
    name: str,
    same: FileRecord | None,
    other: FileRecord | None,
    *,
    force: bool,
    restart: bool,
) -> Decision:
    """`same`: the latest record of this content for the target; `other`: the latest record
    at this name with other content."""
    if same is not None and same.status == "complete" and not force:
        return Decision("skip", why=f"already uploaded ({same.delivered:,} events)")
    forget: list[int] = []
    if same is not None and force:
        forget.append(same.id)
        same = None
    if same is None and other is not None and other.delivered:
        if not (restart or force):
            raise CheckpointError(
                f"{name} changed since {other.delivered:,} of its events were "
                f"delivered ({other.status}); nothing was sent. Give --restart to send "
                "this file again from its first row, or --force to send it again "
                "whatever was delivered before (both can send events twice)"
            )
        forget.append(other.id)
    if same is not None:
        return Decision("resume", same, tuple(forget))
    return Decision("new", None, tuple(forget))


@dataclass(frozen=True)
class FileResume:
    """One input as earlier runs left it."""

    file_id: int
    done: RowSet = field(default_factory=lambda: RowSet([]))  # delivered or settled
    refused: Mapping[int, str] = field(default_factory=dict)  # refused by the API, for good
    delivered_before: int = 0
    keys: bytes = b""  # content keys of the events delivered from it (unfinished files)

    @property
    def fresh(self) -> bool:
        return not len(self.done) and not self.refused

    def handled(self, rows: np.ndarray) -> np.ndarray:
        """Which of `rows` an earlier run dealt with."""
        refused = np.fromiter(self.refused, dtype=np.int64, count=len(self.refused))
        return self.done.contains(rows) | np.isin(rows, refused)

    def split(self, events: Events) -> tuple[Events, int, int]:
        """(events still to send, how many were delivered before, how many refused before)."""
        if not len(events) or self.fresh:
            return events, 0, 0
        delivered = self.done.contains(events.rows)
        refused = np.isin(events.rows, np.fromiter(self.refused, np.int64, len(self.refused)))
        refused &= ~delivered
        fresh = ~(delivered | refused)
        kept = events if fresh.all() else events.take(np.flatnonzero(fresh))
        return kept, int(delivered.sum()), int(refused.sum())


@dataclass(frozen=True)
class ResumePlan:
    to_read: tuple[Source, ...]
    files: Mapping[str, FileResume]  # by input name, for every input to read
    skipped: tuple[tuple[str, str], ...] = ()  # (input, why it is not read)
    possibly_resent: int = 0  # rows an earlier run had in flight, unanswered: sent again

    def done_rows(self, source: Source) -> Callable[[np.ndarray], np.ndarray] | None:
        """For the reader: which rows of `source` an earlier run dealt with (a Parquet row
        group whose rows all are is not read again)."""
        resume = self.files[source.name]
        return None if resume.fresh else resume.handled

    def delivered_keys(self, sources: Sequence[Source]) -> bytes:
        return b"".join(self.files[s.name].keys for s in sources)
