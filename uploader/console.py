"""What a person sees in a terminal, a cron log or a notebook: progress and summaries.

Shell-side only: the core reports progress through an observer (progress.py) and returns a
result record (results.py); this module turns both into text. In a notebook `tqdm.auto`
draws widgets; in a terminal plain tqdm draws text bars.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import IO, Any

from uploader.checkpoint import FileRecord, RunRecord
from uploader.progress import Event, Progress, Stopping, WaitingForLease
from uploader.results import UploadResult, ValidationResult

# A log line this often when stderr is not a terminal (cron, CI): often enough to see that
# the job moves, rarely enough to keep the log readable.
LOG_INTERVAL_S = 5.0


def _tqdm(notebook: bool) -> Any:
    if notebook:
        from tqdm.auto import tqdm as auto  # probes for Jupyter on import: only when wanted

        return auto
    from tqdm import tqdm

    return tqdm


class ReadDisplay:
    """validate: a bar of the bytes of the files read, or of rows where an input is in
    memory (a DataFrame has no size on disk)."""

    def __init__(self, *, notebook: bool = False) -> None:
        self.notebook = notebook
        self.bar: Any = None

    def __call__(self, event: Event) -> None:
        if not isinstance(event, Progress):
            return
        if self.bar is None:
            common: dict[str, Any] = {"desc": "Read", "dynamic_ncols": True, "unit_scale": True}
            if not self.notebook:
                common["file"] = sys.stderr
            if event.bytes_total is not None:
                common.update(total=event.bytes_total, unit="B", unit_divisor=1024)
            else:
                common.update(total=event.rows_total, unit=" rows")
            self.bar = _tqdm(self.notebook)(**common)
        value = event.bytes_read if event.bytes_total is not None else event.rows_read
        if value > self.bar.n:
            self.bar.update(value - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class UploadDisplay:
    """upload: tqdm bars on a terminal or in a notebook; a plain line every few seconds
    elsewhere (cron, CI); nothing if quiet. `stopping` is said at the first interrupt."""

    def __init__(
        self,
        quiet: bool,
        stream: IO[str] | None = None,
        *,
        notebook: bool = False,
        stopping: str = "",
    ) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.notebook = notebook
        self.stopping = stopping
        self.tty = notebook or self.stream.isatty()
        self.bars: dict[str, Any] = {}
        self.last_log = time.monotonic()  # the first line after LOG_INTERVAL_S, not at once
        self.started = time.monotonic()
        self.last: Progress | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Stopping) and self.stopping:
            print(self.stopping, file=self.stream, flush=True)
        if isinstance(event, WaitingForLease):
            print(
                f"uploader: waiting for the other run on this state file to end ({event.holder})",
                file=self.stream,
                flush=True,
            )
        if not isinstance(event, Progress):
            return
        self.last = event
        if self.quiet:
            return
        if self.tty:
            self._bars(event)
        elif time.monotonic() - self.last_log >= LOG_INTERVAL_S:
            self.last_log = time.monotonic()
            self._log(event)

    def _bars(self, progress: Progress) -> None:
        tqdm = _tqdm(self.notebook)
        if not self.bars:
            common: dict[str, Any] = {"dynamic_ncols": True}
            if not self.notebook:
                common["file"] = self.stream
            read = (
                {"unit": "B", "unit_scale": True, "unit_divisor": 1024,
                 "total": progress.bytes_total}
                if progress.bytes_total
                else {"unit": " rows", "unit_scale": True, "total": progress.rows_total}
            )  # fmt: skip
            self.bars = {
                "read": tqdm(desc="Read     ", position=0, **read, **common),
                "sent": tqdm(
                    desc="Delivered", unit=" events", unit_scale=True, position=1, **common
                ),
                "rejected": tqdm(desc="Rejected ", unit=" rows", position=2, **common),
            }
        sent = self.bars["sent"]
        if progress.events_expected is not None and progress.events_expected != sent.total:
            sent.total = progress.events_expected  # an estimate until reading is done
        read_value = progress.bytes_read if progress.bytes_total else progress.rows_read
        for key, value in (
            ("read", read_value),
            ("sent", progress.events_settled),
            ("rejected", progress.events_rejected),
        ):
            bar = self.bars[key]
            if value > bar.n:
                bar.update(value - bar.n)
        if progress.bytes_total:
            self.bars["read"].set_postfix_str(f"{progress.rows_read:,} rows", refresh=False)
        for bar in self.bars.values():
            bar.refresh()  # the elapsed time moves even while a count does not

    def _log(self, progress: Progress) -> None:
        share = progress.read_share
        read = f"read {progress.rows_read:,} rows"
        if share is not None:
            read += f" ({100 * share:.0f}% of the input)"
        delivered = f"delivered {progress.events_sent:,}"
        expected = progress.events_expected
        if expected:
            about = "" if progress.reading_done else "about "
            delivered += (
                f" of {about}{expected:,} events ({100 * progress.events_settled / expected:.0f}%)"
            )
            left = self._time_left(progress.events_settled, expected)
            if left is not None:
                delivered += f", {left} left"
        else:
            delivered += " events"
        print(
            f"uploader: {read}, {delivered}, rejected {progress.events_rejected:,}, "
            f"{progress.requests:,} requests, {progress.retries:,} retries",
            file=self.stream,
            flush=True,
        )

    def _time_left(self, done: int, total: int) -> str | None:
        elapsed = time.monotonic() - self.started
        if done <= 0 or elapsed <= 0 or done >= total:
            return None
        seconds = (total - done) * elapsed / done
        if seconds < 90:
            return f"about {seconds:.0f} s"
        if seconds < 5400:
            return f"about {seconds / 60:.0f} min"
        return f"about {seconds / 3600:.1f} h"

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        if not self.quiet and not self.tty and self.last is not None:
            self._log(self.last)


def format_result(result: ValidationResult) -> str:
    """What the command line prints at the end of a run (and `str(result)` gives)."""
    upload = isinstance(result, UploadResult)
    if result.files or not upload:
        parts = [format_summary(result, planned=not upload)]
    else:
        parts = ["Nothing to read: every input was uploaded before."]
    if isinstance(result, UploadResult):
        parts.append(format_upload(result))
    if result.rejects_path is not None:
        parts.append(
            f"Rejected rows written to {result.rejects_path} ({result.rejects_written:,} rows)."
        )
    elif result.rejects_by_cause and not result.kept_rejects and not upload:
        parts.append("Give --rejects FILE for the full list of rejected rows.")
    if result.bodies_path is not None:
        parts.append(
            f"Request bodies: {result.bodies_path} ({result.requests:,} lines, in send order)"
        )
    if isinstance(result, UploadResult) and result.sandbox_stats is not None:
        stats = result.sandbox_stats
        parts.append(
            f"The sandbox stored {stats['events']:,} events "
            f"({stats['unique_event_ids']:,} distinct ids) from {stats['requests']:,} requests."
        )
    return "\n".join(parts)


def format_summary(result: ValidationResult, *, planned: bool = True) -> str:
    """A plan a person can read: what was read, how it was mapped, what would be sent."""
    lines = [f"Read {result.rows_read:,} rows from {_plural(len(result.files), 'file')}."]
    lines.extend(_dialect_lines(result))
    seen_plans: list[Any] = []
    for file in result.files:
        plan = file.plan
        if plan in seen_plans:
            continue
        seen_plans.append(plan)
        which = "" if len(result.files) == 1 else f" ({os.path.basename(file.name)} and alike)"
        event = (
            f"every row is {plan.event!r}"
            if plan.event
            else f"event from column {plan.event_column!r}"
        )
        mapped = ", ".join(
            f"{_label(f.path)} <- {f.column}{'' if f.detected else ' (--map)'}" for f in plan.fields
        )
        lines.append(f"Mapping{which}: {event}; {mapped}.")
        if plan.notes:
            lines.append(
                f"  A rejects file: its columns {', '.join(plan.notes)} are an earlier run's "
                "notes, not mapped and not sent; each row keeps the eventId of its original row."
            )
        if plan.ignored:
            lines.append(f"  Columns not sent: {', '.join(plan.ignored)}.")
    if result.timestamps:
        read = "; ".join(f"{n:,} {how}" for how, n in result.timestamps.items())
        lines.append(f"Timestamps: {read}.")
    if result.catalog is not None:
        catalog = result.catalog
        lines.append(
            f"Catalogue: {catalog['name']}, column {catalog['column']!r}: "
            f"{catalog['products']:,} products; unknown products "
            + ("rejected." if catalog["mode"] == "reject" else "sent (--catalog-mode warn).")
        )
    if result.ids_normalised:
        normalised = result.ids_normalised
        lines.append(f"Ids written as whole floats, normalised (17850.0 -> 17850): {normalised:,}.")
    lines.append("")
    lines.append(f"Valid events: {result.events_valid:,}")
    for name, count in sorted(result.valid_by_event.items()):
        lines.append(f"  {name:<20} {count:>10,}")
    if result.duplicates_collapsed and result.duplicates == "quantity":
        lines.append(
            "Rows added up into the data.quantity of an earlier row the same but for its "
            f"quantity: {result.duplicates_collapsed:,} (--duplicates quantity)"
        )
    elif result.duplicates_collapsed:
        lines.append(
            f"Exact duplicate rows collapsed into one event: {result.duplicates_collapsed:,} "
            "(--duplicates keep|quantity sends them)"
        )
    if result.unknown_products:
        lines.append(
            f"Products not in the catalogue, sent anyway (--catalog-mode warn): "
            f"{result.unknown_products:,}"
        )
    if result.rows_ignored:
        lines.append(f"Rows left out by --event-map …=ignore: {result.rows_ignored:,}")
    if result.rows_skipped_done_before:
        lines.append(
            f"Rows not read again (Parquet row groups finished by an earlier run): "
            f"{result.rows_skipped_done_before:,}"
        )
    found = sum(cause.count for cause in result.rejects_by_cause)
    lines.append(f"Rejected rows: {found:,}")
    for cause in result.rejects_by_cause:
        # The cause without the rows' own values, then one row's words: a count of 427 is
        # not all for the value quoted in its first example.
        example = cause.examples[0]
        lines.append(f"  {cause.count:>8,}  {cause.cause}")
        where = f"{os.path.basename(example.file)} row {example.row}"
        own = f"{example.field}: {example.reason}"
        lines.append(
            f"            e.g. {where}" + ("" if own == cause.cause else f": {example.reason}")
        )
    law = result.accounted
    lines.append(
        f"Rows accounted for: {law['rows_read']:,} read = {law['events_valid']:,} valid + "
        f"{law['rows_rejected']:,} rejected + {law['duplicates_collapsed']:,} duplicates "
        f"collapsed + {law['rows_ignored']:,} left out"
        + ("" if law["holds"] else " (DOES NOT ADD UP: please report this)")
    )
    if planned:
        lines.append(f"Requests: {result.requests:,} ({result.request_bytes:,} bytes of JSON)")
    if result.choice_needed:
        lines.extend(["", *format_choice(result)])
    return "\n".join(lines)


def format_choice(result: ValidationResult) -> list[str]:
    """The notice of identical order rows with no --duplicates choice: what each would send."""
    repeats = result.repeats_by_event.get("Product ordered", 0)
    orders = result.valid_by_event.get("Product ordered", 0)
    where = ""
    if result.order_repeat is not None:
        where = f" (e.g. {os.path.basename(result.order_repeat[0])} row {result.order_repeat[1]:,})"
    return [
        f"CHOICE NEEDED: {repeats:,} 'Product ordered' rows repeat an earlier row exactly{where}.",
        f"  --duplicates collapse   sends {orders:,} order events: each repeated line once",
        f"  --duplicates keep       sends {orders + repeats:,}: one per row, ids numbered by "
        "occurrence",
        "  --duplicates quantity   sends each repeated line once, with data.quantity the "
        "number of its rows (the sum of their quantities)",
        'uploader upload sends nothing until one is chosen (the flag, or duplicates = "…" in '
        "the config).",
    ]


def _dialect_lines(result: ValidationResult) -> list[str]:
    """How the CSV files were read: one line if they were all read alike, else one each."""
    dialects = [(f.name, f.dialect) for f in result.files if f.dialect is not None]
    if not dialects:
        return []
    if len({d for _, d in dialects}) == 1:
        return [f"CSV: {dialects[0][1].describe()}."]
    return [f"CSV ({os.path.basename(name)}): {d.describe()}." for name, d in dialects]


def format_upload(result: UploadResult) -> str:
    lines = [
        "",
        f"Delivered: {result.events_sent:,} events in {result.requests:,} requests "
        f"({result.retries:,} retries) in {result.elapsed_s:.1f} s, "
        f"{result.events_per_s:,.0f} events/s",
    ]
    if result.status_counts:
        codes = ", ".join(f"{code}: {n:,}" for code, n in result.status_counts.items())
        lines.append(f"  Answers: {codes}")
    if result.concurrency.get("per_task"):  # the Spark engine: each task adapts its own
        shared = result.concurrency.get("slowed_by_other_tasks", 0)
        also = f"; slowed down {shared:,} times for other tasks' 429s" if shared else ""
        lines.append(f"  Requests in flight: {result.concurrency['mode']}, per task{also}")
    elif result.concurrency.get("mode") == "adaptive":
        lines.append(
            f"  Requests in flight: adaptive, settled on {result.concurrency['settled']} "
            f"(highest {result.concurrency['highest']}; --concurrency N pins it)"
        )
    if result.events_rejected_by_api:
        lines.append(f"Refused by the API: {result.events_rejected_by_api:,} (in the rejects file)")
    if result.events_skipped_already_sent:
        lines.append(
            f"Not sent again, delivered by an earlier run: {result.events_skipped_already_sent:,}"
        )
    if result.possibly_resent:
        resent = result.possibly_resent
        lines.append(f"Possibly sent twice (in flight when an earlier run stopped): {resent:,}")
    for name, why in result.skipped_files:
        lines.append(f"Skipped {name}: {why} (--force sends it again)")
    return "\n".join(lines)


def format_status(runs: Sequence[RunRecord], files: Sequence[FileRecord]) -> str:
    lines = ["Runs:"]
    if not runs:
        lines.append("  none")
    for run in runs:
        ended = _when(run.ended_at) if run.ended_at else "-"
        lines.append(
            f"  #{run.id:<4} {_when(run.started_at)} -> {ended}  {run.status:<11} {run.target}"
        )
    lines.append("Files:")
    if not files:
        lines.append("  none")
    for f in files:
        remaining = max(f.rows_read - f.delivered - f.rejected, 0)
        left = "" if f.status == "complete" else f", about {remaining:,} rows not yet delivered"
        lines.append(
            f"  {f.status:<8} {f.path} -> {f.target}: {f.rows_read:,} rows read, "
            f"{f.delivered:,} delivered, {f.rejected:,} rejected{left}"
        )
    return "\n".join(lines)


def _label(path: str) -> str:
    return "productId" if path == "data.productId" else path


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
