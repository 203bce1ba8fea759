"""What the Python API hands back: the run's figures as attributes, rejects and counts as
DataFrames, the first request bodies, and a summary that reads as text and as HTML.

Nothing here holds the API key: results are built from the figures, the rejects and the
request bodies, none of which ever carries it.
"""

from __future__ import annotations

import html
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pandas as pd

from uploader.batches import Batch
from uploader.read import Source
from uploader.report import REJECT_COLUMNS, RejectsWriter
from uploader.validate import RowReject

# Rejected rows kept in memory for `.rejects`: enough to see every cause many times over,
# bounded so that an input where every row is bad does not fill the notebook's memory
# (`rejects=PATH` still writes all of them).
REJECTS_KEPT = 100_000
# Request bodies kept for `.sample_payload()`: a few to look at, not a copy of the upload.
PAYLOADS_KEPT = 10
# Reject causes listed in the HTML summary; the rest are in `.figures`.
CAUSES_SHOWN = 10


class RejectsCollector:
    """on_rejects sink: keeps the first `limit` rejects as rows of the `.rejects` frame."""

    def __init__(self, columns: Sequence[str], limit: int | None = None) -> None:
        self.columns = [c for c in dict.fromkeys(columns) if c not in REJECT_COLUMNS]
        self.limit = REJECTS_KEPT if limit is None else limit
        self.rows: list[list[Any]] = []
        self.seen = 0

    def __call__(self, rejects: Sequence[RowReject]) -> None:
        # One thread calls this (an upload's event loop); the frame is built after the run.
        room = max(self.limit - len(self.rows), 0)
        for r in rejects[:room]:
            original = [r.original.get(c) for c in self.columns]
            self.rows.append([r.file, r.row, r.field, r.reason, *original])
        self.seen += len(rejects)

    @property
    def truncated(self) -> bool:
        return self.seen > len(self.rows)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=[*REJECT_COLUMNS, *self.columns])


class BatchSampler:
    """on_batch sink: the first request bodies."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, batch: Batch) -> None:
        if len(self.bodies) < PAYLOADS_KEPT:
            self.bodies.append(batch.body)


class Collectors:
    """Where a run's side streams go: rejects (kept in memory, and written to a file if
    asked), the first request bodies, and the progress bars (closed with the rest)."""

    def __init__(self, sources: Sequence[Source], rejects_path: Any, bar: Any) -> None:
        columns = [c for s in sources for c in s.columns]
        self.rejects = RejectsCollector(columns)
        self.sampler = BatchSampler()
        self.bar = bar
        self.closed = False
        try:
            self.writer = RejectsWriter(os.fspath(rejects_path), columns) if rejects_path else None
        except BaseException:
            if bar is not None:
                bar.close()
            raise

    def on_rejects(self, rejects: Sequence[RowReject]) -> None:
        self.rejects(rejects)
        if self.writer is not None:
            self.writer.write(rejects)

    def close(self, *, ok: bool) -> None:
        """Idempotent; `ok=False` drops the half-written rejects file."""
        if self.closed:
            return
        self.closed = True
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None and ok:
            self.writer.close()
        elif self.writer is not None:
            self.writer.abandon()

    def notes(self) -> list[str]:
        if self.writer is None:
            return []
        return [f"Rejected rows written to {self.writer.path} ({self.writer.count:,} rows)."]


@dataclass(frozen=True, eq=False)
class ValidationResult:
    """What `validate()` found. Nothing was sent."""

    figures: dict[str, Any]
    rejects: pd.DataFrame = field(repr=False)
    rejects_truncated: bool
    by_event: pd.DataFrame = field(repr=False)
    summary: str = field(repr=False)  # the text the command line prints
    bodies: tuple[bytes, ...] = field(repr=False)

    @property
    def rows_read(self) -> int:
        return int(self.figures["rows_read"])

    @property
    def events_valid(self) -> int:
        return int(self.figures["events_valid"])

    @property
    def events_rejected(self) -> int:
        return int(self.figures["events_rejected"])

    @property
    def duplicates_collapsed(self) -> int:
        return int(self.figures["duplicates_collapsed"])

    @property
    def requests(self) -> int:
        return int(self.figures["requests"])

    def sample_payload(self, n: int = 1) -> list[dict[str, Any]]:
        """The first `n` request bodies as packed, as Python dicts (at most PAYLOADS_KEPT).
        An upload sends the first event of each new event name alone, ahead of its batch."""
        if not 1 <= n <= PAYLOADS_KEPT:
            raise ValueError(f"n must be between 1 and {PAYLOADS_KEPT}; got {n}")
        return [orjson.loads(body) for body in self.bodies[:n]]

    def __str__(self) -> str:
        return self.summary

    def __repr__(self) -> str:
        return (
            f"<ValidationResult: {self.rows_read:,} rows read, {self.events_valid:,} valid "
            f"events, {self.events_rejected:,} rejected>"
        )

    def _rows(self) -> list[tuple[str, Any]]:
        return [
            ("rows read", self.rows_read),
            ("valid events", self.events_valid),
            ("rejected rows", self.events_rejected),
            ("duplicates collapsed", self.duplicates_collapsed),
            ("requests it would take", self.requests),
        ]

    def _title(self) -> str:
        return "Validation: nothing was sent"

    def _repr_html_(self) -> str:
        notes = []
        if self.rejects_truncated:
            notes.append(
                f"<code>.rejects</code> holds the first {len(self.rejects):,} rejected rows; "
                "give <code>rejects=PATH</code> for all of them."
            )
        return render_html(self._title(), self._rows(), self.by_event, self.figures, notes)


@dataclass(frozen=True, eq=False)
class UploadResult(ValidationResult):
    """What `upload()` did. `status`: "completed", "aborted" or "interrupted" (in both
    latter cases run the same call again to resume)."""

    status: str = "completed"
    message: str | None = None
    skipped_files: tuple[tuple[str, str], ...] = ()
    sandbox_stats: dict[str, Any] | None = None  # what a sandbox stored, when one was used

    @property
    def events_sent(self) -> int:
        return int(self.figures["events_sent"])

    @property
    def events_skipped_already_sent(self) -> int:
        return int(self.figures["events_skipped_already_sent"])

    @property
    def events_rejected_by_api(self) -> int:
        return int(self.figures["events_rejected_by_api"])

    @property
    def possibly_resent(self) -> int:
        return int(self.figures["possibly_resent"])

    @property
    def retries(self) -> int:
        return int(self.figures["retries"])

    @property
    def status_counts(self) -> dict[str, int]:
        return dict(self.figures["status_counts"])

    @property
    def elapsed_s(self) -> float:
        return float(self.figures["elapsed_s"])

    @property
    def events_per_s(self) -> float:
        return float(self.figures["events_per_s"])

    def __repr__(self) -> str:
        parts = [f"{self.events_sent:,} events sent", f"{self.events_rejected:,} rejected"]
        if self.events_skipped_already_sent:
            parts.append(f"{self.events_skipped_already_sent:,} sent by an earlier run")
        if self.skipped_files:
            n = len(self.skipped_files)
            parts.append(f"{n:,} input{'' if n == 1 else 's'} uploaded before")
        return f"<UploadResult {self.status}: {', '.join(parts)}>"

    def _rows(self) -> list[tuple[str, Any]]:
        answers = ", ".join(f"{code}: {n:,}" for code, n in self.status_counts.items())
        return [
            ("rows read", self.rows_read),
            ("valid events", self.events_valid),
            ("rejected rows", self.events_rejected),
            ("duplicates collapsed", self.duplicates_collapsed),
            ("events sent", self.events_sent),
            ("skipped, sent by an earlier run", self.events_skipped_already_sent),
            ("possibly sent twice", self.possibly_resent),
            ("requests", self.requests),
            ("retries", self.retries),
            ("answers", answers or "-"),
            ("elapsed", f"{self.elapsed_s:.1f} s"),
            ("events per second", f"{self.events_per_s:,.0f}"),
        ]

    def _title(self) -> str:
        return f"Upload {self.status}"

    def _repr_html_(self) -> str:
        notes = []
        if self.message:
            notes.append(html.escape(self.message))
        if self.status != "completed":
            notes.append("Delivered rows are recorded: run the same call again to resume.")
        for name, why in self.skipped_files:
            notes.append(f"Skipped {html.escape(name)}: {html.escape(why)} (force=True sends it).")
        if self.rejects_truncated:
            notes.append(
                f"<code>.rejects</code> holds the first {len(self.rejects):,} rejected rows; "
                "give <code>rejects=PATH</code> for all of them."
            )
        return render_html(self._title(), self._rows(), self.by_event, self.figures, notes)


def by_event_frame(
    valid: Mapping[str, int], delivered: Mapping[str, int] | None = None, *, upload: bool = False
) -> pd.DataFrame:
    """Counts per event name: valid (and, for an upload, delivered by this call)."""
    names = sorted(set(valid) | set(delivered or {}))
    frame = pd.DataFrame({"valid": [valid.get(n, 0) for n in names]}, index=names, dtype="int64")
    if upload:
        counts = [pd.NA if delivered is None else delivered.get(n, 0) for n in names]
        frame["delivered"] = pd.array(counts, dtype="Int64")
    frame.index.name = "event"
    return frame


def render_html(
    title: str,
    rows: Sequence[tuple[str, Any]],
    by_event: pd.DataFrame,
    figures: Mapping[str, Any],
    notes: Sequence[str],
) -> str:
    """A compact summary: the figures, the counts per event, the main reject causes."""
    parts = [f"<div><strong>{html.escape(title)}</strong>"]
    for note in notes:  # already escaped by the caller
        parts.append(f"<br><small>{note}</small>")
    parts.append(_table(None, [(label, _number(v)) for label, v in rows]))
    if len(by_event):
        header = ("event", *by_event.columns)
        body = [(str(name), *(_number(v) for v in row)) for name, row in by_event.iterrows()]
        parts.append(_table(header, body))
    causes = figures.get("rejects_by_cause", [])[:CAUSES_SHOWN]
    if causes:
        body = []
        for cause in causes:
            # The cause, not an example's reason: one cause groups many values ('add',
            # 'wishlist'), and an example would put its value on the whole count.
            example = cause["examples"][0] if cause["examples"] else None
            where = f"{os.path.basename(example['file'])} row {example['row']}" if example else ""
            body.append((cause["cause"], _number(cause["count"]), where))
        parts.append(_table(("rejected because", "rows", "e.g."), body))
    parts.append("</div>")
    return "\n".join(parts)


def _table(header: Sequence[str] | None, body: Sequence[Sequence[str]]) -> str:
    lines = ['<table style="margin-top:0.5em">']
    if header is not None:
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        lines.append(f"<thead><tr>{cells}</tr></thead>")
    lines.append("<tbody>")
    for row in body:
        first, *rest = row
        tds = "".join(f'<td style="text-align:right">{html.escape(v)}</td>' for v in rest)
        lines.append(f'<tr><th style="text-align:left">{html.escape(first)}</th>{tds}</tr>')
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _number(value: Any) -> str:
    if value is pd.NA:
        return "n/a"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
