"""What a person sees in a terminal, a cron log or a notebook: progress and summaries.

Shell-side only: the core reports progress through callbacks and never imports tqdm. In a
notebook `tqdm.auto` draws widgets; in a terminal plain tqdm draws text bars.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import IO, Any

from uploader.checkpoint import FileRecord, RunRecord
from uploader.pipeline import Progress
from uploader.read import Source
from uploader.upload import UploadOutcome, UploadProgress

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

    def __init__(self, sources: Sequence[Source], *, notebook: bool = False) -> None:
        sizes = [s.size for s in sources]
        rows = [s.rows for s in sources]
        self.by_bytes = None not in sizes
        tqdm = _tqdm(notebook)
        common: dict[str, Any] = {"desc": "Read", "dynamic_ncols": True, "unit_scale": True}
        if not notebook:
            common["file"] = sys.stderr
        if self.by_bytes:
            total = sum(s or 0 for s in sizes)
            self.bar = tqdm(total=total, unit="B", unit_divisor=1024, **common)
        else:
            total_rows = None if None in rows else sum(r or 0 for r in rows)
            self.bar = tqdm(total=total_rows, unit=" rows", **common)
        self.done: dict[str, int] = {}

    def __call__(self, progress: Progress) -> None:
        if self.by_bytes:
            self.done[progress.source.name] = progress.bytes_done or 0
            self.bar.update(sum(self.done.values()) - self.bar.n)
        else:
            self.bar.update(progress.rows)

    def close(self) -> None:
        self.bar.close()


class UploadDisplay:
    """upload: tqdm bars on a terminal or in a notebook; a plain line every few seconds
    elsewhere (cron, CI); nothing if quiet."""

    def __init__(
        self, quiet: bool, stream: IO[str] | None = None, *, notebook: bool = False
    ) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.notebook = notebook
        self.tty = notebook or self.stream.isatty()
        self.bars: dict[str, Any] = {}
        self.last_log = time.monotonic()  # the first line after LOG_INTERVAL_S, not at once
        self.last: UploadProgress | None = None

    def __call__(self, progress: UploadProgress) -> None:
        self.last = progress
        if self.quiet:
            return
        if self.tty:
            self._bars(progress)
        elif time.monotonic() - self.last_log >= LOG_INTERVAL_S:
            self.last_log = time.monotonic()
            self._log(progress)

    def _bars(self, progress: UploadProgress) -> None:
        tqdm = _tqdm(self.notebook)
        if not self.bars:
            common: dict[str, Any] = {"dynamic_ncols": True, "unit_scale": True}
            if not self.notebook:
                common["file"] = self.stream
            read = (
                {"unit": "B", "unit_divisor": 1024, "total": progress.bytes_total}
                if progress.bytes_total
                else {"unit": " rows"}
            )
            self.bars = {
                "read": tqdm(desc="Read     ", position=0, **read, **common),
                "sent": tqdm(desc="Delivered", unit=" events", position=1, **common),
                "rejected": tqdm(desc="Rejected ", unit=" rows", position=2, **common),
            }
        read_value = progress.bytes_read if progress.bytes_total else progress.rows_read
        for key, value in (
            ("read", read_value),
            ("sent", progress.events_sent),
            ("rejected", progress.events_rejected),
        ):
            bar = self.bars[key]
            if value > bar.n:
                bar.update(value - bar.n)
        if progress.bytes_total:
            self.bars["read"].set_postfix_str(f"{progress.rows_read:,} rows", refresh=False)

    def _log(self, progress: UploadProgress) -> None:
        share = (
            f" ({100 * progress.bytes_read / progress.bytes_total:.0f}% of the input)"
            if progress.bytes_total
            else ""
        )
        print(
            f"uploader: read {progress.rows_read:,} rows{share}, delivered "
            f"{progress.events_sent:,} events, rejected {progress.events_rejected:,}, "
            f"{progress.requests:,} requests, {progress.retries:,} retries",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        if not self.quiet and not self.tty and self.last is not None:
            self._log(self.last)


def format_upload(outcome: UploadOutcome) -> str:
    f = outcome.figures
    lines = [
        "",
        f"Delivered: {f['events_sent']:,} events in {f['requests']:,} requests "
        f"({f['retries']:,} retries) in {f['elapsed_s']:.1f} s, {f['events_per_s']:,.0f} events/s",
    ]
    if f["status_counts"]:
        codes = ", ".join(f"{code}: {n:,}" for code, n in f["status_counts"].items())
        lines.append(f"  Answers: {codes}")
    if f["events_rejected_by_api"]:
        lines.append(f"Refused by the API: {f['events_rejected_by_api']:,} (in the rejects file)")
    if f["events_skipped_already_sent"]:
        lines.append(
            f"Not sent again, delivered by an earlier run: {f['events_skipped_already_sent']:,}"
        )
    if f["possibly_resent"]:
        lines.append(
            f"Possibly sent twice (in flight when an earlier run stopped): {f['possibly_resent']:,}"
        )
    for name, why in outcome.skipped_files:
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


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
