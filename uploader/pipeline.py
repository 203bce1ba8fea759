"""The offline pipeline: read → map → validate → event ids → batches.

`prepare_events` runs the row stages over every chunk of every source and tallies what it
saw; `plan_run` adds packing and hands each batch to a sink (nothing, a file of request
bodies, or the sender). Progress and rejects leave through callbacks, so shells decide how
to show them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from uploader.batches import Batch, body_size_alone, pack_batches
from uploader.column_types import check_types
from uploader.contract import EVENT_NAMES
from uploader.dialect import CsvDialect
from uploader.event_ids import DuplicateTracker, Event, assign_event_ids
from uploader.mapping import MappingPlan, map_columns, plan_mapping
from uploader.options import Options
from uploader.progress import Observer, Progress, ReadMeter
from uploader.read import CHUNK_ROWS, Chunk, DoneRows, Source, read_frames
from uploader.reasons import Reason
from uploader.validation import RowReject, reject_row, validate_rows

LONGEST_NAME = max(EVENT_NAMES, key=len)
# Examples of each reject cause kept for the summary.
EXAMPLES_PER_CAUSE = 3


@dataclass
class Tally:
    """Running counts of one run; `summary()` freezes them."""

    rows_read: int = 0
    events_valid: int = 0
    events_rejected: int = 0
    duplicates_collapsed: int = 0
    rows_ignored: int = 0
    rows_skipped: int = 0  # not read again: dealt with in an earlier run (Parquet row groups)
    already_sent: int = 0  # events an earlier run delivered (resuming): not sent again
    refused_before: int = 0  # events the API refused in an earlier run: not sent again
    ids_normalised: int = 0
    requests: int = 0
    bytes: int = 0
    by_event: Counter[str] = field(default_factory=Counter)
    reject_causes: Counter[str] = field(default_factory=Counter)
    reject_examples: dict[str, list[RowReject]] = field(default_factory=dict)
    timestamps: Counter[str] = field(default_factory=Counter)
    plans: dict[str, MappingPlan] = field(default_factory=dict)
    dialects: dict[str, CsvDialect] = field(default_factory=dict)  # of the CSV files
    files: dict[str, int] = field(default_factory=dict)

    def add_rejects(self, rejects: Sequence[RowReject]) -> None:
        self.events_rejected += len(rejects)
        for reject in rejects:
            kind = reject.kind
            self.reject_causes[kind] += 1
            examples = self.reject_examples.setdefault(kind, [])
            if len(examples) < EXAMPLES_PER_CAUSE:
                examples.append(reject)

    def add_batch(self, batch: Batch) -> None:
        self.requests += 1
        self.bytes += len(batch.body)


@dataclass(frozen=True)
class Prepared:
    """One chunk after the row stages: events to send and rows rejected."""

    chunk: Chunk
    events: list[Event]
    rejects: list[RowReject]
    collapsed: list[int]  # rows that repeat an earlier event exactly: not sent, counted


RejectSink = Callable[[Sequence[RowReject]], None]
BatchSink = Callable[[Batch], None]


def plan_sources(sources: Sequence[Source], options: Options) -> dict[str, MappingPlan]:
    """The mapping of every source, before any row is read: a bad mapping stops the run."""
    by_columns: dict[tuple[str, ...], MappingPlan] = {}
    plans = {}
    for source in sources:
        if source.columns not in by_columns:
            by_columns[source.columns] = plan_mapping(source.columns, options, source.name)
        plans[source.name] = by_columns[source.columns]
        check_types(plans[source.name], source)
    return plans


def prepare_events(
    sources: Sequence[Source],
    options: Options,
    tally: Tally,
    *,
    chunk_rows: int = CHUNK_ROWS,
    tracker: DuplicateTracker | None = None,
    done: DoneRows | None = None,
) -> Iterator[Prepared]:
    """Map, validate and id every row of every source, chunk by chunk. With `done`, Parquet
    row groups dealt with in an earlier run are skipped, not re-derived."""
    tracker = tracker or DuplicateTracker(options.keep_duplicates)
    plans = plan_sources(sources, options)
    for source in sources:
        tally.plans[source.name] = plans[source.name]
        tally.files[source.name] = 0
        if source.dialect is not None:
            tally.dialects[source.name] = source.dialect
    for chunk in read_frames(sources, chunk_rows, done):
        if chunk.skipped:
            tally.rows_skipped += chunk.skipped
            yield Prepared(chunk, [], [], [])
            continue
        plan = plans[chunk.source.name]
        mapped = map_columns(chunk, plan, options)
        valid, rejects = validate_rows(mapped, plan)
        sent_before = tracker.already_sent
        identified = assign_event_ids(mapped, valid, tracker)
        tally.already_sent += tracker.already_sent - sent_before
        events = identified.events
        rejects.extend(identified.rejects)
        events = _drop_oversize(events, mapped, options.max_request_bytes, rejects)
        rejects.extend(
            RowReject(
                chunk.source.name,
                row,
                "row",
                Reason(f"malformed CSV line: {why}", "malformed CSV line (wrong number of fields)"),
            )
            for row, why in chunk.malformed
        )
        rejects.sort(key=lambda r: r.row)
        tally.rows_read += chunk.table.num_rows + len(chunk.malformed)
        tally.files[chunk.source.name] += chunk.table.num_rows + len(chunk.malformed)
        tally.rows_ignored += len(mapped.ignored)
        tally.ids_normalised += mapped.normalised_ids
        tally.timestamps.update(mapped.timestamp_methods)
        tally.events_valid += len(events)
        tally.by_event.update(e.name for e in events)
        tally.add_rejects(rejects)
        tally.duplicates_collapsed = tracker.collapsed
        yield Prepared(chunk, events, rejects, identified.collapsed)


def _drop_oversize(
    events: list[Event], mapped: Any, max_bytes: int, rejects: list[RowReject]
) -> list[Event]:
    # Cheap screen first: an item shorter than this fits whatever its group's name.
    roomy = max_bytes - body_size_alone(Event(LONGEST_NAME, "", b"", "", 0))
    if all(len(e.item) <= roomy for e in events):
        return events
    kept = []
    for event in events:
        size = body_size_alone(event)
        if size <= max_bytes:
            kept.append(event)
            continue
        index = mapped.chunk.rows.to_pylist().index(event.row)
        reason = Reason(
            f"the event alone makes a {size}-byte request, above --max-request-bytes "
            f"{max_bytes}; shorten its values or raise the limit",
            "too large for one request (see --max-request-bytes)",
        )
        rejects.append(reject_row(mapped, index, "row", reason))
    return kept


def plan_run(
    sources: Sequence[Source],
    options: Options,
    *,
    on_batch: BatchSink | None = None,
    on_rejects: RejectSink | None = None,
    observer: Observer | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Tally:
    """Run everything but the sending; each batch goes to on_batch in send order."""
    tally = Tally()
    meter = ReadMeter(sources)

    def events() -> Iterator[Event]:
        for prepared in prepare_events(sources, options, tally, chunk_rows=chunk_rows):
            if prepared.rejects and on_rejects is not None:
                on_rejects(prepared.rejects)
            if observer is not None:
                meter.note(prepared.chunk.source.name, prepared.chunk.bytes_done)
                observer(
                    Progress(
                        tally.rows_read,
                        meter.bytes_read,
                        meter.bytes_total,
                        meter.rows_total,
                        events_rejected=tally.events_rejected,
                    )
                )
            yield from prepared.events

    for batch in pack_batches(events(), options.batch_size, options.max_request_bytes):
        tally.add_batch(batch)
        if on_batch is not None:
            on_batch(batch)
    return tally
