"""The offline pipeline: read → map → validate → event ids → batches.

`prepare_events` runs the row stages over every chunk of every source (the per-chunk ones
in build.py, the run-wide ones here) and tallies what it saw; `plan_run` adds packing and
hands each batch to a sink (nothing, a file of request bodies, or the sender). Progress and
rejects leave through callbacks, so shells decide how to show them.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from uploader.batches import Batch, pack_batches
from uploader.build import Built
from uploader.catalog import CatalogInfo
from uploader.column_types import check_types
from uploader.dialect import CsvDialect
from uploader.event_ids import DuplicateTracker, settle_events
from uploader.events import Events
from uploader.mapping import MappingPlan, plan_mapping
from uploader.options import Options
from uploader.progress import Observer, Progress, ReadMeter
from uploader.read import CHUNK_ROWS, Source, read_sample
from uploader.repeats import Counted, RepeatCounts
from uploader.resume import ResumePlan
from uploader.validation import RowReject
from uploader.workers import built_chunks

_NO_ROWS = np.empty(0, np.int64)
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
    collapsed_by_code: np.ndarray = field(default_factory=lambda: np.zeros(4, np.int64))
    first_order_repeat: tuple[str, int] | None = None  # a 'Product ordered' repeat
    unknown_products: int = 0  # not in --catalog, sent anyway (--catalog-mode warn)
    catalog: CatalogInfo | None = None

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
    """One chunk after every row stage: events to send and rows rejected."""

    file: str
    rows_read: int
    bytes_done: int | None
    events: Events
    rejects: list[RowReject]
    collapsed: np.ndarray  # rows that repeat an earlier event exactly: not sent, counted


RejectSink = Callable[[Sequence[RowReject]], None]
BatchSink = Callable[[Batch], None]


def plan_sources(sources: Sequence[Source], options: Options) -> dict[str, MappingPlan]:
    """The mapping of every source, before any row is read: a bad mapping stops the run."""
    by_columns: dict[tuple[str, ...], MappingPlan] = {}
    plans = {}
    for source in sources:
        if source.columns not in by_columns:
            sample = partial(read_sample, source)  # read only if the names leave a problem
            by_columns[source.columns] = plan_mapping(source.columns, options, source.name, sample)
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
    done: ResumePlan | None = None,
    guard_orders: bool = False,
) -> Iterator[Prepared]:
    """Every chunk through every row stage: the per-chunk ones (build.py, in a worker
    process when that helps: workers.py), then the run-wide ones here. With `done`, Parquet
    row groups an earlier run finished are skipped, not re-derived. With `guard_orders` (an
    upload), identical 'Product ordered' rows with no --duplicates choice stop the run
    before the first event is handed on (repeats.py)."""
    plans = plan_sources(sources, options)
    for source in sources:
        tally.plans[source.name] = plans[source.name]
        tally.files[source.name] = 0
        if source.dialect is not None:
            tally.dialects[source.name] = source.dialect
    owned = tracker is None
    tracker = tracker or DuplicateTracker(options.keep_duplicates)
    counting = options.duplicates == "quantity" or (
        guard_orders and options.duplicates is None and any(_may_order(p) for p in plans.values())
    )
    counts = RepeatCounts() if counting else None
    built = built_chunks(
        sources, options, plans, chunk_rows=chunk_rows, done=done, count_first=counting
    )
    try:
        first: list[Built] = []
        if counts is not None:
            for item in built:  # the first pass: every chunk counted, then the built ones
                if isinstance(item, Counted):
                    counts.add(item)
                else:
                    first.append(item)
                    break
            if options.duplicates is None:
                counts.refuse_unchosen()
            else:
                tracker.finish = counts.apply
        yield from settle_chunks(itertools.chain(first, built), tally, tracker)
    finally:
        built.close()  # a worker process stops with it
        if owned:
            tracker.close()
        if counts is not None:
            counts.close()


def _may_order(plan: MappingPlan) -> bool:
    """Whether a plan can give 'Product ordered' events."""
    return plan.event == "Product ordered" or plan.event_column is not None


def settle_chunks(
    built: Iterable[Built], tally: Tally, tracker: DuplicateTracker
) -> Iterator[Prepared]:
    """The run-wide stages (exact duplicates, given eventIds used twice), and the tally."""
    for chunk in built:
        if chunk.candidates is None:
            tally.rows_skipped += chunk.skipped
            yield Prepared(chunk.file, 0, chunk.bytes_done, Events.empty(chunk.file), [], _NO_ROWS)
            continue
        sent_before = tracker.already_sent
        identified = settle_events(chunk.candidates, tracker)
        tally.already_sent += tracker.already_sent - sent_before
        rejects = chunk.rejects + identified.rejects
        rejects.sort(key=lambda r: r.row)
        events = identified.events
        tally.rows_read += chunk.rows_read
        tally.files[chunk.file] += chunk.rows_read
        tally.rows_ignored += chunk.ignored
        tally.ids_normalised += chunk.normalised
        tally.timestamps.update(chunk.timestamps)
        tally.unknown_products += chunk.unknown_products
        tally.catalog = chunk.catalog or tally.catalog
        tally.events_valid += len(events)
        tally.by_event.update(events.name_counts())
        tally.add_rejects(rejects)
        tally.duplicates_collapsed = tracker.collapsed
        tally.collapsed_by_code = tracker.collapsed_by_code.copy()
        tally.first_order_repeat = tracker.first_order_repeat
        yield Prepared(
            chunk.file, chunk.rows_read, chunk.bytes_done, events, rejects, identified.collapsed
        )


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

    def blocks() -> Iterator[Events]:
        for prepared in prepare_events(sources, options, tally, chunk_rows=chunk_rows):
            if prepared.rejects and on_rejects is not None:
                on_rejects(prepared.rejects)
            if observer is not None:
                meter.note(prepared.file, prepared.bytes_done)
                observer(
                    Progress(
                        tally.rows_read,
                        meter.bytes_read,
                        meter.bytes_total,
                        meter.rows_total,
                        events_rejected=tally.events_rejected,
                    )
                )
            yield prepared.events

    for batch in pack_batches(blocks(), options.batch_size, options.max_request_bytes):
        tally.add_batch(batch)
        if on_batch is not None:
            on_batch(batch)
    return tally
