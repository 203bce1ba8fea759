"""The ledger: what the run loop tells the state file, and the only writer of it.

The run loop reports each request before it goes (`sending`), what the API did with its
events (`delivered`, `refused`), that every answer is in (`answered`), rows that need no
sending (`settled`), how much of an input was read (`read`) and that it was read to its
end (`read_all`). `Ledger` is that
protocol: the run loop knows nothing else about where it is kept. `StateLedger` keeps it
in the local SQLite state file (checkpoint.py), and also plans the run from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from uploader.batches import Batch
from uploader.checkpoint import SENT, SETTLED, Checkpoint
from uploader.errors import UploaderError
from uploader.events import Events
from uploader.inputs import Source, fingerprint
from uploader.resume import FileResume, ResumePlan, decide
from uploader.target import Target


class Ledger(Protocol):
    def sending(self, batch: Batch) -> int: ...
    def delivered(self, batch: Batch) -> None: ...
    def refused(self, events: Events, reason: str) -> None: ...
    def answered(self, token: int, batch: Batch) -> None: ...
    def settled(self, file: str, rows: np.ndarray) -> None: ...
    def read(self, file: str, rows: int, queued: int, rejected: int) -> None: ...
    def read_all(self, file: str) -> None: ...
    def unfinished(self) -> bool: ...


@dataclass
class _FileProgress:
    """One input during the run. `rows_read`, `queued` (events handed to the senders) and
    `rejected` (before sending) are final once the reader has read it all."""

    file_id: int
    delivered_before: int = 0
    refused_before: int = 0
    rows_read: int = 0
    queued: int = 0
    rejected: int = 0
    delivered: int = 0
    refused: int = 0
    read_done: bool = False
    complete: bool = False


class StateLedger:
    """The ledger in a local state file, for one run against one target."""

    def __init__(self, checkpoint: Checkpoint, target: Target) -> None:
        self.checkpoint = checkpoint
        # What delivered inputs are recorded against (the port of a sandbox is not part).
        self.target_key = f"{target.org}/{target.project}/{target.source_id}"
        self.run_id = checkpoint.start_run(target.describe())
        self.files: dict[str, _FileProgress] = {}

    def plan(self, sources: Sequence[Source], *, force: bool, restart: bool) -> ResumePlan:
        """Decide every input against what the state file knows, and record new ones."""
        to_read: list[Source] = []
        resumes: dict[str, FileResume] = {}
        skipped: list[tuple[str, str]] = []
        for source in sources:
            try:
                print_ = fingerprint(source)
            except OSError as exc:
                raise UploaderError(f"{source.name}: cannot read ({exc.strerror})") from exc
            same, other = self.checkpoint.find_file(self.target_key, print_, source.name)
            decision = decide(source.name, same, other, force=force, restart=restart)
            if decision.action == "skip":
                skipped.append((source.name, decision.why))
                continue
            for file_id in decision.forget:
                self.checkpoint.forget_file(file_id)
            if decision.record is None:
                file_id = self.checkpoint.add_file(self.target_key, source, print_, self.run_id)
                resumes[source.name] = FileResume(file_id)
            else:
                file_id = decision.record.id
                done, refused = self.checkpoint.done_rows(file_id)
                resumes[source.name] = FileResume(
                    file_id,
                    done,
                    refused,
                    self.checkpoint.delivered_count(file_id),
                    self.checkpoint.delivered_keys(file_id),
                )
            resume = resumes[source.name]
            self.files[source.name] = _FileProgress(
                file_id, resume.delivered_before, len(resume.refused)
            )
            to_read.append(source)
        possibly_resent = self._count_leftovers(resumes)
        self.checkpoint.note_resent(self.run_id, possibly_resent)
        return ResumePlan(tuple(to_read), resumes, tuple(skipped), possibly_resent)

    def _count_leftovers(self, resumes: dict[str, FileResume]) -> int:
        """Rows of requests an earlier run sent without hearing back, not delivered since:
        this run sends them again."""
        by_id = {resume.file_id: resume for resume in resumes.values()}
        count = 0
        for file_id, rows in self.checkpoint.take_leftover_inflight().items():
            resume = by_id.get(file_id)
            if resume is not None:
                count += int((~resume.handled(np.asarray(rows, dtype=np.int64))).sum())
        return count

    # the protocol
    def sending(self, batch: Batch) -> int:
        rows = {self.files[batch.file].file_id: batch.events.rows}
        return self.checkpoint.mark_inflight(self.run_id, rows)

    def delivered(self, batch: Batch) -> None:
        events = batch.events
        progress = self.files[events.file]
        keys = events.keys[events.keys != b""].tobytes()
        self.checkpoint.ack({progress.file_id: events.rows}, SENT, {progress.file_id: keys})
        progress.delivered += len(events)

    def refused(self, events: Events, reason: str) -> None:
        progress = self.files[events.file]
        for row in events.rows.tolist():
            self.checkpoint.refuse(progress.file_id, row, reason)
        progress.refused += len(events)

    def answered(self, token: int, batch: Batch) -> None:
        self.checkpoint.settle(token)
        self._maybe_complete(batch.file)

    def settled(self, file: str, rows: np.ndarray) -> None:
        self.checkpoint.ack({self.files[file].file_id: rows}, SETTLED)

    def read(self, file: str, rows: int, queued: int, rejected: int) -> None:
        progress = self.files[file]
        progress.rows_read += rows
        progress.queued += queued
        progress.rejected += rejected

    def read_all(self, file: str) -> None:
        self.files[file].read_done = True
        self._maybe_complete(file)

    def unfinished(self) -> bool:
        return any(not f.complete for f in self.files.values())

    # the end of the run
    def close_run(self, status: str, figures: dict[str, Any]) -> None:
        for name in self.files:
            self._save(name)
        self.checkpoint.end_run(self.run_id, status, figures)

    def fail_run(self, error: BaseException) -> None:
        self.checkpoint.end_run(self.run_id, "failed", {"error": type(error).__name__})

    def _maybe_complete(self, name: str) -> None:
        progress = self.files[name]
        settled = progress.delivered + progress.refused
        if not progress.complete and progress.read_done and settled >= progress.queued:
            progress.complete = True
            self._save(name)
            self.checkpoint.drop_keys(progress.file_id)

    def _save(self, name: str) -> None:
        progress = self.files[name]
        self.checkpoint.update_file(
            progress.file_id,
            rows_read=progress.rows_read,
            delivered=progress.delivered_before + progress.delivered,
            rejected=progress.rejected + progress.refused_before + progress.refused,
            complete=progress.complete,
        )
