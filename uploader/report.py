"""Report stage: the rejects file, the JSON figures and the plain-text summary of a run."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import IO, Any

import orjson

from uploader.pipeline import Tally
from uploader.validate import RowReject

REJECT_COLUMNS = ("file", "row", "field", "reason")


class RejectsWriter:
    """Streams rejects to CSV: file, row, field, reason, then the union of source columns.

    Written to a temporary name and renamed on close, so a crash never leaves half a file
    under the name the user asked for.
    """

    def __init__(self, path: str, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = [c for c in dict.fromkeys(columns) if c not in REJECT_COLUMNS]
        self._tmp = f"{path}.partial"
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        self._fh: IO[str] = open(self._tmp, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._writer = csv.writer(self._fh)
        self._writer.writerow([*REJECT_COLUMNS, *self.columns])
        self.count = 0

    def write(self, rejects: Sequence[RowReject]) -> None:
        for r in rejects:
            original = [_cell(r.original.get(c)) for c in self.columns]
            self._writer.writerow([r.file, r.row, r.field, r.reason, *original])
        self.count += len(rejects)

    def close(self) -> None:
        self._fh.close()
        os.replace(self._tmp, self.path)

    def abandon(self) -> None:
        self._fh.close()
        os.unlink(self._tmp)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def write_json(path: str, figures: dict[str, Any]) -> None:
    tmp = f"{path}.partial"
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps(figures, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, path)


def figures(tally: Tally, timezone: str) -> dict[str, Any]:
    """The run's figures as JSON-ready data (the --report file)."""
    return {
        "rows_read": tally.rows_read,
        "events_valid": tally.events_valid,
        "events_rejected": tally.events_rejected,
        "duplicates_collapsed": tally.duplicates_collapsed,
        "rows_ignored": tally.rows_ignored,
        "rows_skipped_done_before": tally.rows_skipped,
        "ids_normalised": tally.ids_normalised,
        "by_event": dict(sorted(tally.by_event.items())),
        "rejects_by_cause": [
            {
                "cause": cause,
                "count": count,
                "examples": [
                    {"file": r.file, "row": r.row, "field": r.field, "reason": r.reason}
                    for r in tally.reject_examples[cause]
                ],
            }
            for cause, count in tally.reject_causes.most_common()
        ],
        "files": [
            {
                "file": name,
                "rows": rows,
                "mapping": {f.path: f.column for f in tally.plans[name].fields},
                "event": tally.plans[name].event,
                "event_column": tally.plans[name].event_column,
                "columns_not_sent": list(tally.plans[name].ignored),
            }
            for name, rows in tally.files.items()
        ],
        "timestamps": dict(tally.timestamps.most_common()),
        "timezone": timezone,
        "requests": tally.requests,
        "bytes": tally.bytes,
    }


def format_summary(tally: Tally, *, planned: bool = True) -> str:
    """A plan a person can read: what was read, how it was mapped, what would be sent."""
    lines = [f"Read {tally.rows_read:,} rows from {_plural(len(tally.files), 'file')}."]
    seen_plans: list[Any] = []
    for name, plan in tally.plans.items():
        if plan in seen_plans:
            continue
        seen_plans.append(plan)
        which = "" if len(tally.plans) == 1 else f" ({os.path.basename(name)} and alike)"
        event = (
            f"every row is {plan.event!r}"
            if plan.event
            else f"event from column {plan.event_column!r}"
        )
        mapped = ", ".join(
            f"{_label(f.path)} <- {f.column}{'' if f.detected else ' (--map)'}" for f in plan.fields
        )
        lines.append(f"Mapping{which}: {event}; {mapped}.")
        if plan.ignored:
            lines.append(f"  Columns not sent: {', '.join(plan.ignored)}.")
    if tally.timestamps:
        read = "; ".join(f"{n:,} {how}" for how, n in tally.timestamps.most_common())
        lines.append(f"Timestamps: {read}.")
    if tally.ids_normalised:
        lines.append(
            f"Ids written as whole floats, normalised (17850.0 -> 17850): {tally.ids_normalised:,}."
        )
    lines.append("")
    lines.append(f"Valid events: {tally.events_valid:,}")
    for name, count in sorted(tally.by_event.items()):
        lines.append(f"  {name:<20} {count:>10,}")
    if tally.duplicates_collapsed:
        lines.append(
            f"Exact duplicate rows collapsed into one event: {tally.duplicates_collapsed:,} "
            "(--keep-duplicates sends each)"
        )
    if tally.rows_ignored:
        lines.append(f"Rows left out by --event-map …=ignore: {tally.rows_ignored:,}")
    if tally.rows_skipped:
        lines.append(
            f"Rows not read again (Parquet row groups finished by an earlier run): "
            f"{tally.rows_skipped:,}"
        )
    lines.append(f"Rejected rows: {tally.events_rejected:,}")
    for cause, count in tally.reject_causes.most_common():
        # The cause without the rows' own values, then one row's words: a count of 427 is
        # not all for the value quoted in its first example.
        example = tally.reject_examples[cause][0]
        lines.append(f"  {count:>8,}  {cause}")
        where = f"{os.path.basename(example.file)} row {example.row}"
        own = f"{example.field}: {example.reason}"
        lines.append(f"            e.g. {where}" + ("" if own == cause else f": {example.reason}"))
    if planned:
        lines.append(f"Requests: {tally.requests:,} ({tally.bytes:,} bytes of JSON)")
    return "\n".join(lines)


def _label(path: str) -> str:
    return "productId" if path == "data.productId" else path


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")
