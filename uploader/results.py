"""What a run returns: one frozen record of its figures, with `to_json()` for `--report`.

The core builds it; the command line prints it (console.py) and the Python API hands it to
the caller as is: its fields are the figures (`result.events_sent`), `rejects` and
`by_event` are DataFrames, `sample_payload()` gives the first request bodies, and in Jupyter
it shows as a table. Nothing here holds the API key: results are built from counts, rejects
and request bodies, none of which ever carries it.
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

from uploader.dialect import CsvDialect
from uploader.mapping import MappingPlan
from uploader.validation import RowReject

# Rejected rows the Python API keeps in memory for `.rejects`: enough to see every cause
# many times over, bounded so that an input where every row is bad does not fill the
# notebook's memory (`rejects=PATH` still writes all of them).
REJECTS_KEPT = 100_000
# Request bodies the Python API keeps for `.sample_payload()`: a few to look at.
PAYLOADS_KEPT = 10
# Reject causes listed in the HTML summary; the rest are in `.figures`.
CAUSES_SHOWN = 10
REJECT_COLUMNS = ("file", "row", "field", "reason")


@dataclass(frozen=True)
class CauseCount:
    """Rejected rows of one cause, with the first few as examples."""

    cause: str
    count: int
    examples: tuple[RowReject, ...] = ()

    def to_json(self) -> dict[str, Any]:
        examples = [
            {"file": r.file, "row": r.row, "field": r.field, "reason": r.reason}
            for r in self.examples
        ]
        return {"cause": self.cause, "count": self.count, "examples": examples}


@dataclass(frozen=True)
class FileFigures:
    """One input: the rows read from it this run, and how its columns were mapped."""

    name: str
    rows: int
    plan: MappingPlan
    dialect: CsvDialect | None = None  # CSV: the encoding and delimiter it was read with

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.name,
            "rows": self.rows,
            "mapping": {f.path: f.column for f in self.plan.fields},
            "event": self.plan.event,
            "event_column": self.plan.event_column,
            "columns_not_sent": list(self.plan.ignored),
            **({"rejects_file_notes": list(self.plan.notes)} if self.plan.notes else {}),
            **({"csv": self.dialect.to_json()} if self.dialect is not None else {}),
        }


@dataclass(frozen=True, eq=False)
class ValidationResult:
    """What a validation found (or a dry run packed). Nothing was sent."""

    rows_read: int = 0
    events_valid: int = 0
    events_rejected: int = 0
    duplicates_collapsed: int = 0
    rows_ignored: int = 0
    rows_skipped_done_before: int = 0  # Parquet row groups an earlier run finished
    ids_normalised: int = 0
    # What repeated identical rows became: the --duplicates choice (None: not chosen, they
    # collapse), the repeats per event name, and a 'Product ordered' row that repeats one.
    duplicates: str | None = None
    repeats_by_event: Mapping[str, int] = field(default_factory=dict)
    order_repeat: tuple[str, int] | None = None
    # The --catalog checked against (file, column, products, mode), and the rows of products
    # not in it that were sent anyway (--catalog-mode warn).
    catalog: Mapping[str, Any] | None = None
    unknown_products: int = 0
    valid_by_event: Mapping[str, int] = field(default_factory=dict)
    rejects_by_cause: tuple[CauseCount, ...] = ()  # found before sending
    files: tuple[FileFigures, ...] = ()
    timestamps: Mapping[str, int] = field(default_factory=dict)  # how they were read
    timezone: str = "UTC"
    requests: int = 0
    request_bytes: int = 0  # of the packed request bodies
    # What the run wrote and kept, besides the figures.
    rejects_path: str | None = None
    rejects_written: int = 0
    rejects_seen: int = 0  # rejected rows reported (those refused by an earlier run are not)
    bodies_path: str | None = None
    columns: tuple[str, ...] = field(default=(), repr=False)  # the inputs' columns
    kept_rejects: tuple[RowReject, ...] = field(default=(), repr=False)
    bodies: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def all_rejects_by_cause(self) -> tuple[CauseCount, ...]:
        return self.rejects_by_cause

    @property
    def accounted(self) -> dict[str, Any]:
        """The conservation law, for users to check: every row read is a valid event, a
        rejected row, a duplicate collapsed into an earlier event, or a row left out."""
        rejected = sum(cause.count for cause in self.rejects_by_cause)
        parts = {
            "rows_read": self.rows_read,
            "events_valid": self.events_valid,
            "rows_rejected": rejected,
            "duplicates_collapsed": self.duplicates_collapsed,
            "rows_ignored": self.rows_ignored,
        }
        total = self.events_valid + rejected + self.duplicates_collapsed + self.rows_ignored
        return {**parts, "holds": total == self.rows_read}

    @property
    def choice_needed(self) -> bool:
        """Identical 'Product ordered' rows and no --duplicates choice: an upload refuses."""
        return self.duplicates is None and bool(self.repeats_by_event.get("Product ordered"))

    @property
    def rejects_truncated(self) -> bool:
        """`.rejects` holds fewer rows than were rejected."""
        return self.rejects_seen > len(self.kept_rejects)

    @property
    def figures(self) -> dict[str, Any]:
        return self.to_json()

    def to_json(self) -> dict[str, Any]:
        """The figures as JSON-ready data: the --report file."""
        return {
            "rows_read": self.rows_read,
            "events_valid": self.events_valid,
            "events_rejected": self.events_rejected,
            "duplicates_collapsed": self.duplicates_collapsed,
            "rows_ignored": self.rows_ignored,
            "rows_skipped_done_before": self.rows_skipped_done_before,
            "ids_normalised": self.ids_normalised,
            "duplicates": {
                "choice": self.duplicates,
                "repeats_by_event": dict(sorted(self.repeats_by_event.items())),
                "choice_needed": self.choice_needed,
            },
            **(
                {"catalog": {**self.catalog, "unknown_products_sent": self.unknown_products}}
                if self.catalog is not None
                else {}
            ),
            "by_event": dict(sorted(self.valid_by_event.items())),
            "rejects_by_cause": [c.to_json() for c in self.all_rejects_by_cause],
            "files": [f.to_json() for f in self.files],
            "timestamps": dict(self.timestamps),
            "timezone": self.timezone,
            "requests": self.requests,
            "bytes": self.request_bytes,
            "accounted": self.accounted,
        }

    @property
    def rejects(self) -> pd.DataFrame:
        """The rejected rows kept in memory: file, row, field, reason, then the original
        columns (the first REJECTS_KEPT from the Python API; `rejects=PATH` has them all)."""
        columns = [c for c in dict.fromkeys(self.columns) if c not in REJECT_COLUMNS]
        rows = [
            [r.file, r.row, r.field, r.reason, *(r.original.get(c) for c in columns)]
            for r in self.kept_rejects
        ]
        return pd.DataFrame(rows, columns=[*REJECT_COLUMNS, *columns])

    @property
    def by_event(self) -> pd.DataFrame:
        """Valid events per event name."""
        return _by_event_frame(self.valid_by_event, None)

    def sample_payload(self, n: int = 1) -> list[dict[str, Any]]:
        """The first `n` request bodies as packed, as Python dicts (at most PAYLOADS_KEPT).
        An upload sends the first event of each new event name alone, ahead of its batch."""
        if not 1 <= n <= PAYLOADS_KEPT:
            raise ValueError(f"n must be between 1 and {PAYLOADS_KEPT}; got {n}")
        return [orjson.loads(body) for body in self.bodies[:n]]

    def __str__(self) -> str:
        from uploader.console import format_result

        return format_result(self)

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

    def _notes(self) -> list[str]:
        notes = []
        if self.choice_needed:
            repeats = self.repeats_by_event.get("Product ordered", 0)
            notes.append(
                f"<strong>Choice needed:</strong> {repeats:,} 'Product ordered' rows repeat an "
                'earlier row exactly; give <code>duplicates="collapse"</code>, '
                '<code>"keep"</code> or <code>"quantity"</code> (an upload sends nothing '
                "until then)."
            )
        if self.rejects_truncated:
            notes.append(
                f"<code>.rejects</code> holds the first {len(self.kept_rejects):,} rejected "
                "rows; give <code>rejects=PATH</code> for all of them."
            )
        return notes

    def _repr_html_(self) -> str:
        return _render_html(self._title(), self._rows(), self.by_event, self, self._notes())


@dataclass(frozen=True, eq=False)
class UploadResult(ValidationResult):
    """What an upload did. `status`: "completed", "aborted" or "interrupted" (in both latter
    cases run the same call again to resume). `requests` counts the requests sent."""

    status: str = "completed"
    message: str | None = None
    events_sent: int = 0
    delivered_by_event: Mapping[str, int] = field(default_factory=dict)
    events_rejected_by_api: int = 0
    api_rejects_by_cause: tuple[CauseCount, ...] = ()
    events_skipped_already_sent: int = 0
    events_refused_in_earlier_runs: int = 0
    possibly_resent: int = 0
    skipped_files: tuple[tuple[str, str], ...] = ()  # (input, why it was not read)
    retries: int = 0
    status_counts: Mapping[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    events_per_s: float = 0.0
    # Requests in flight: "pinned" (--concurrency) or "adaptive", where the limit ended up
    # and the highest it reached.
    concurrency: Mapping[str, Any] = field(default_factory=dict)
    sandbox_stats: Mapping[str, Any] | None = None  # what a sandbox stored, when one was used

    @property
    def all_rejects_by_cause(self) -> tuple[CauseCount, ...]:
        return self.rejects_by_cause + self.api_rejects_by_cause

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "events_sent": self.events_sent,
            "delivered_by_event": dict(sorted(self.delivered_by_event.items())),
            "events_rejected_by_api": self.events_rejected_by_api,
            "events_skipped_already_sent": self.events_skipped_already_sent,
            "events_refused_in_earlier_runs": self.events_refused_in_earlier_runs,
            "possibly_resent": self.possibly_resent,
            "files_skipped": [{"file": f, "why": why} for f, why in self.skipped_files],
            "retries": self.retries,
            "status_counts": dict(self.status_counts),
            "elapsed_s": self.elapsed_s,
            "events_per_s": self.events_per_s,
            "concurrency": dict(self.concurrency),
            "status": self.status,
        }

    @property
    def by_event(self) -> pd.DataFrame:
        """Valid events per event name, and those this call delivered."""
        return _by_event_frame(self.valid_by_event, self.delivered_by_event)

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

    def _notes(self) -> list[str]:
        notes = []
        if self.message:
            notes.append(html.escape(self.message))
        if self.status != "completed":
            notes.append("Delivered rows are recorded: run the same call again to resume.")
        for name, why in self.skipped_files:
            notes.append(f"Skipped {html.escape(name)}: {html.escape(why)} (force=True sends it).")
        return notes + super()._notes()


def _by_event_frame(valid: Mapping[str, int], delivered: Mapping[str, int] | None) -> pd.DataFrame:
    names = sorted(set(valid) | set(delivered or {}))
    frame = pd.DataFrame({"valid": [valid.get(n, 0) for n in names]}, index=names, dtype="int64")
    if delivered is not None:
        frame["delivered"] = pd.array([delivered.get(n, 0) for n in names], dtype="Int64")
    frame.index.name = "event"
    return frame


def _render_html(
    title: str,
    rows: Sequence[tuple[str, Any]],
    by_event: pd.DataFrame,
    result: ValidationResult,
    notes: Sequence[str],
) -> str:
    """A compact summary: the figures, the counts per event, the main reject causes."""
    parts = [f"<div><strong>{html.escape(title)}</strong>"]
    for note in notes:  # already escaped
        parts.append(f"<br><small>{note}</small>")
    parts.append(_table(None, [(label, _number(v)) for label, v in rows]))
    if len(by_event):
        header = ("event", *by_event.columns)
        body = [(str(name), *(_number(v) for v in row)) for name, row in by_event.iterrows()]
        parts.append(_table(header, body))
    causes = result.all_rejects_by_cause[:CAUSES_SHOWN]
    if causes:
        lines = []
        for cause in causes:
            # The cause, not an example's reason: one cause groups many values ('add',
            # 'wishlist'), and an example would put its value on the whole count.
            example = cause.examples[0] if cause.examples else None
            where = f"{os.path.basename(example.file)} row {example.row}" if example else ""
            lines.append((cause.cause, _number(cause.count), where))
        parts.append(_table(("rejected because", "rows", "e.g."), lines))
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
