"""Upload: the offline pipeline feeding the sender, with a checkpoint after every 2xx.

A reader thread runs read → map → validate → ids → batches and hands batches to the
event loop through a bounded queue (back-pressure keeps memory flat); worker tasks send
them. Rows already delivered in an earlier run are dropped after the id stage (so that
duplicate collapsing sees the whole input) and never sent again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter
from typing import Any

import httpx
import numpy as np

from uploader.batches import Batch, encode_body, pack_batches
from uploader.checkpoint import SENT, SETTLED, Checkpoint, RowSet, fingerprint
from uploader.duplicates import KeySet, split_key_blob
from uploader.errors import CheckpointError, SendError, UploaderError
from uploader.event_ids import DuplicateTracker, Event
from uploader.options import Options
from uploader.pipeline import Tally, plan_sources, prepare_events
from uploader.read import Source
from uploader.report import figures
from uploader.send import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_RETRY_TIME,
    AdaptiveConcurrency,
    RetryPolicy,
    Sender,
)
from uploader.target import Credentials, Target
from uploader.validate import RowReject

DEFAULT_STATE = ".uploader/state.db"
# Batches waiting between the reader thread and the senders: enough to keep every sender
# busy, and at most about QUEUE_EVENTS events, so that memory stays flat with large
# batches and many senders (16 senders x 5,000-event batches held 0.1 GB more at 10M rows).
QUEUE_BATCHES_PER_SENDER = 2
QUEUE_EVENTS = 40_000
# How often progress is reported to the shell.
PROGRESS_INTERVAL_S = 0.2


@dataclass(frozen=True)
class UploadSettings:
    target: Target
    credentials: Credentials = field(repr=False)
    state: str = DEFAULT_STATE
    concurrency: int = DEFAULT_CONCURRENCY
    rate: float | None = None
    max_retry_time: float = DEFAULT_MAX_RETRY_TIME
    force: bool = False  # send files again even if they were delivered
    restart: bool = False  # start changed files over


@dataclass(frozen=True)
class UploadProgress:
    rows_read: int
    bytes_read: int
    bytes_total: int | None  # None: some input has no size on disk (an in-memory table)
    events_sent: int
    events_rejected: int
    requests: int
    retries: int


@dataclass(frozen=True)
class UploadOutcome:
    """How the run ended: "completed", "aborted" (resumable) or "interrupted"."""

    status: str
    message: str | None
    figures: dict[str, Any]
    tally: Tally
    skipped_files: tuple[tuple[str, str], ...]


@dataclass
class _FileState:
    """One file's counters. The reader thread writes `queued`, `rows_read` and `local_rejects`
    (final once the loop hears "file_read"); the event loop writes the rest."""

    file_id: int
    done: RowSet
    refused: dict[int, str]
    delivered_before: int = 0
    queued: int = 0
    rows_read: int = 0
    delivered: int = 0
    refused_now: int = 0
    local_rejects: int = 0
    read_done: bool = False
    complete: bool = False

    @property
    def settled(self) -> int:
        return self.delivered + self.refused_now


_END = object()


class UploadRun:
    """One upload. `request_stop()` (first Ctrl-C) lets in-flight requests finish."""

    def __init__(
        self,
        sources: Sequence[Source],
        options: Options,
        settings: UploadSettings,
        *,
        on_progress: Callable[[UploadProgress], None] | None = None,
        on_rejects: Callable[[Sequence[RowReject]], None] | None = None,
        on_batch: Callable[[Batch], None] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.sources = list(sources)
        self.options = options
        self.settings = settings
        self.on_progress = on_progress
        self.on_rejects = on_rejects
        self.on_batch = on_batch  # called in the reader thread as each batch is packed
        self.transport = transport
        self.sleep = sleep
        self.tally = Tally()
        self.files: dict[str, _FileState] = {}
        self.skipped: list[tuple[str, str]] = []
        self.tracker: DuplicateTracker | None = None  # made by the reader thread
        self.checkpoint_keys: dict[str, bytes] = {}  # resumed files: content keys sent before
        self.stop_reading = threading.Event()
        self.stopping = False
        self.warmed: set[str] = set()
        self.events_sent = 0
        self.events_api_rejected = 0
        self.skipped_already_sent = 0  # reader thread
        self.skipped_refused_before = 0  # reader thread
        self.possibly_resent = 0
        self.api_reject_causes: Counter[str] = Counter()
        self.delivered_by_event: Counter[str] = Counter()
        self._warm_lock = asyncio.Lock()
        self.bytes_total: int | None = None
        self.bytes_done: dict[str, int] = {}  # reader thread: how far into each file

    @property
    def target_key(self) -> str:
        """What delivered files are recorded against (the port of a sandbox is not part)."""
        t = self.settings.target
        return f"{t.org}/{t.project}/{t.source_id}"

    def request_stop(self) -> None:
        self.stopping = True
        self.stop_reading.set()

    async def run(self) -> UploadOutcome:
        plan_sources(self.sources, self.options)  # bad mapping: stop before any state
        checkpoint = Checkpoint(self.settings.state)
        try:
            return await self._run(checkpoint)
        finally:
            checkpoint.close()

    async def _run(self, checkpoint: Checkpoint) -> UploadOutcome:
        self.checkpoint = checkpoint
        run_id = checkpoint.start_run(self.settings.target.describe())
        self.run_id = run_id
        to_read = self._decide_files(run_id)
        sizes = [s.size for s in to_read]
        self.bytes_total = None if None in sizes else sum(s or 0 for s in sizes)
        self._count_leftovers()
        checkpoint.note_resent(run_id, self.possibly_resent)
        started = time.monotonic()
        policy = RetryPolicy(max_retry_time=self.settings.max_retry_time)
        limiter = AdaptiveConcurrency(self.settings.concurrency, rate=self.settings.rate)
        status, message = "completed", None
        async with Sender(
            self.settings.target,
            self.settings.credentials,
            policy=policy,
            limiter=limiter,
            transport=self.transport,
            sleep=self.sleep,
        ) as sender:
            self.sender = sender
            try:
                await self._pump(to_read, sender)
            except SendError as exc:
                status, message = "aborted", str(exc)
            except httpx.HTTPError as exc:  # not retryable: a proxy or protocol problem
                status = "aborted"
                message = self.settings.credentials.redact(
                    f"cannot talk to {self.settings.target.base_url}: {exc}"
                )
            except BaseException as exc:
                self.stop_reading.set()
                checkpoint.end_run(run_id, "failed", {"error": type(exc).__name__})
                raise
            finally:
                self.stop_reading.set()
        unfinished = any(not f.complete for f in self.files.values())
        if self.stopping and status == "completed" and unfinished:
            status, message = "interrupted", "stopped on request; run the same command to resume"
        elapsed = time.monotonic() - started
        for name in self.files:
            self._save_file(name)
        result = self._figures(elapsed)
        checkpoint.end_run(run_id, status, result)
        return UploadOutcome(status, message, result, self.tally, tuple(self.skipped))

    # planning the files
    def _decide_files(self, run_id: int) -> list[Source]:
        to_read = []
        for source in self.sources:
            try:
                fp = fingerprint(source)
            except OSError as exc:
                raise UploaderError(f"{source.name}: cannot read ({exc.strerror})") from exc
            same, other = self.checkpoint.find_file(self.target_key, fp, source.name)
            if same is not None and same.status == "complete" and not self.settings.force:
                self.skipped.append((source.name, f"already uploaded ({same.delivered:,} events)"))
                continue
            if same is not None and self.settings.force:
                self.checkpoint.forget_file(same.id)
                same = None
            if same is None and other is not None and other.delivered:
                if self.settings.restart or self.settings.force:
                    self.checkpoint.forget_file(other.id)
                else:
                    raise CheckpointError(
                        f"{source.name} changed since {other.delivered:,} of its events were "
                        f"delivered ({other.status}); nothing was sent. Give --restart to send "
                        "this file again from its first row, or --force to send it again "
                        "whatever was delivered before (both can send events twice)"
                    )
            if same is None:
                file_id = self.checkpoint.add_file(self.target_key, source, fp, run_id)
                self.files[source.name] = _FileState(file_id, RowSet([]), {})
            else:
                done, refused = self.checkpoint.done_rows(same.id)
                delivered = self.checkpoint.delivered_count(same.id)
                self.checkpoint_keys[source.name] = self.checkpoint.delivered_keys(same.id)
                self.files[source.name] = _FileState(same.id, done, refused, delivered)
            to_read.append(source)
        return to_read

    def _count_leftovers(self) -> None:
        by_id = {state.file_id: state for state in self.files.values()}
        for file_id, rows in self.checkpoint.take_leftover_inflight().items():
            state = by_id.get(file_id)
            if state is None:
                continue
            pending = np.asarray(rows, dtype=np.int64)
            settled = state.done.contains(pending) | np.isin(pending, list(state.refused))
            self.possibly_resent += int((~settled).sum())

    # the reader thread
    def _events(self, sources: Sequence[Source], emit: Callable[[object], None]) -> Iterator[Event]:
        tracker = DuplicateTracker(self.options.keep_duplicates)
        keys = b"".join(self.checkpoint_keys.get(s.name, b"") for s in sources)
        if keys and not self.options.keep_duplicates:
            tracker.previous = KeySet()
            tracker.previous.add(*split_key_blob(keys))
        self.tracker = tracker
        unread = [s.name for s in sources]

        def finish_files_before(name: str | None) -> None:
            while unread and unread[0] != name:
                emit(("file_read", unread.pop(0)))

        for prepared in prepare_events(
            sources, self.options, self.tally, tracker=tracker, done=self._done_rows
        ):
            if self.stop_reading.is_set():
                return
            name = prepared.chunk.source.name
            finish_files_before(name)
            state = self.files[name]
            state.rows_read += prepared.chunk.table.num_rows + len(prepared.chunk.malformed)
            self.bytes_done[name] = prepared.chunk.bytes_done or 0
            state.local_rejects += len(prepared.rejects)
            if prepared.rejects:
                emit(("rejects", prepared.rejects))
            settled = prepared.collapsed + [r.row for r in prepared.rejects]
            if settled:
                emit(("settled", name, settled))
            fresh = self._not_done(prepared.events, state)
            state.queued += len(fresh)
            yield from fresh
        finish_files_before(None)

    def _done_rows(self, source: Source) -> Callable[[np.ndarray], np.ndarray] | None:
        """For the reader: which rows of `source` an earlier run dealt with. None with
        --keep-duplicates: occurrences are numbered by reading every row again."""
        state = self.files[source.name]
        if self.options.keep_duplicates or (not len(state.done) and not state.refused):
            return None
        refused = np.fromiter(state.refused, dtype=np.int64, count=len(state.refused))
        return lambda rows: state.done.contains(rows) | np.isin(rows, refused)

    def _not_done(self, events: list[Event], state: _FileState) -> list[Event]:
        """Events whose rows were neither delivered nor refused by the API before."""
        if not events or (not len(state.done) and not state.refused):
            return events
        rows = np.fromiter((e.row for e in events), dtype=np.int64, count=len(events))
        done = state.done.contains(rows)
        fresh = []
        for event, delivered in zip(events, done.tolist(), strict=True):
            if delivered:
                self.skipped_already_sent += 1
            elif event.row in state.refused:
                self.skipped_refused_before += 1
            else:
                fresh.append(event)
        return fresh

    def _read(self, sources: Sequence[Source], loop: asyncio.AbstractEventLoop, queue: Any) -> None:
        def emit(item: object) -> None:
            future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
            while not self.stop_reading.is_set():
                try:
                    future.result(timeout=0.2)
                    return
                except TimeoutError:
                    continue
            future.cancel()

        try:
            batches = pack_batches(
                self._events(sources, emit), self.options.batch_size, self.options.max_request_bytes
            )
            for batch in batches:
                self.tally.add_batch(batch)  # the bytes packed; requests come from the sender
                if self.on_batch is not None:
                    self.on_batch(batch)
                emit(batch)
                if self.stop_reading.is_set():
                    return
            emit(_END)
        except BaseException as exc:  # handed to the loop, which raises it there
            emit(("error", exc))

    # the event loop side
    async def _pump(self, sources: Sequence[Source], sender: Sender) -> None:
        loop = asyncio.get_running_loop()
        per_senders = QUEUE_BATCHES_PER_SENDER * self.settings.concurrency
        by_events = QUEUE_EVENTS // self.options.batch_size
        queue: asyncio.Queue[object] = asyncio.Queue(maxsize=max(2, min(per_senders, by_events)))
        reader = threading.Thread(
            target=self._read, args=(sources, loop, queue), name="uploader-reader", daemon=True
        )
        reader.start()
        workers = [
            asyncio.create_task(self._work(queue, sender)) for _ in range(self.settings.concurrency)
        ]
        ticker = asyncio.create_task(self._tick())
        try:
            done, pending = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    for other in pending:
                        other.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    raise task.exception()  # type: ignore[misc]
        finally:
            self.stop_reading.set()
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            self._report_progress()
            await asyncio.to_thread(reader.join, 5)

    async def _work(self, queue: asyncio.Queue[object], sender: Sender) -> None:
        while not self.stopping:
            try:
                item = await asyncio.wait_for(queue.get(), PROGRESS_INTERVAL_S)
            except TimeoutError:
                continue
            if item is _END:
                await queue.put(_END)  # let the other workers see it too
                return
            if isinstance(item, Batch):
                await self._send(item, sender)
            elif isinstance(item, tuple) and item[0] == "rejects":
                if self.on_rejects is not None:
                    self.on_rejects(item[1])
            elif isinstance(item, tuple) and item[0] == "settled":
                self.checkpoint.ack({self.files[item[1]].file_id: item[2]}, SETTLED)
            elif isinstance(item, tuple) and item[0] == "file_read":
                self.files[item[1]].read_done = True
                self._maybe_complete(item[1])
            elif isinstance(item, tuple) and item[0] == "error":
                raise item[1]

    async def _send(self, batch: Batch, sender: Sender) -> None:
        new_names = [n for n in dict.fromkeys(e.name for e in batch.events) if n not in self.warmed]
        if new_names:
            async with self._warm_lock:
                rest = list(batch.events)
                for name in new_names:
                    if name in self.warmed:
                        continue
                    first = next(e for e in rest if e.name == name)
                    rest.remove(first)
                    # The API is slow and flaky while it creates a new event's schema: one
                    # small request per new name goes alone before the fan-out.
                    await self._send_one(Batch(batch.seq, (first,), encode_body([first])), sender)
                    self.warmed.add(name)
            if not rest:
                return
            batch = Batch(batch.seq, tuple(rest), encode_body(rest))
        await self._send_one(batch, sender)

    async def _send_one(self, batch: Batch, sender: Sender) -> None:
        inflight = self.checkpoint.mark_inflight(self.run_id, self._refs(batch.events))
        await sender.send_batch(batch, self._delivered, self._refused)
        self.checkpoint.settle(inflight)
        for name in {e.file for e in batch.events}:
            self._maybe_complete(name)

    def _refs(self, events: Sequence[Event]) -> dict[int, list[int]]:
        refs: dict[int, list[int]] = {}
        for file, group in groupby(events, key=attrgetter("file")):  # runs of one file
            refs.setdefault(self.files[file].file_id, []).extend(e.row for e in group)
        return refs

    async def _delivered(self, batch: Batch, status: int) -> None:
        refs: dict[int, list[int]] = {}
        keys: dict[int, list[bytes]] = {}
        for file, group in groupby(batch.events, key=attrgetter("file")):
            events = list(group)
            state = self.files[file]
            refs.setdefault(state.file_id, []).extend(e.row for e in events)
            keys.setdefault(state.file_id, []).extend(e.key for e in events if e.key)
            state.delivered += len(events)
        joined = {file_id: b"".join(parts) for file_id, parts in keys.items() if parts}
        self.checkpoint.ack(refs, SENT, joined)
        self.events_sent += len(batch)
        self.delivered_by_event.update(e.name for e in batch.events)

    async def _refused(self, events: Sequence[Event], reason: str) -> None:
        rejects = []
        for event in events:
            state = self.files[event.file]
            self.checkpoint.refuse(state.file_id, event.row, reason)
            state.refused_now += 1
            reject = RowReject(event.file, event.row, "api", reason)
            self.api_reject_causes[reject.kind] += 1
            rejects.append(reject)
        self.events_api_rejected += len(events)
        if self.on_rejects is not None:
            self.on_rejects(rejects)

    def _maybe_complete(self, name: str) -> None:
        state = self.files[name]
        if not state.complete and state.read_done and state.settled >= state.queued:
            state.complete = True
            self._save_file(name)
            self.checkpoint.drop_keys(state.file_id)

    def _save_file(self, name: str) -> None:
        state = self.files[name]
        self.checkpoint.update_file(
            state.file_id,
            rows_read=state.rows_read,
            delivered=state.delivered_before + state.delivered,
            rejected=state.local_rejects + len(state.refused) + state.refused_now,
            complete=state.complete,
        )

    async def _tick(self) -> None:
        while True:
            self._report_progress()
            await asyncio.sleep(PROGRESS_INTERVAL_S)

    def _report_progress(self) -> None:
        if self.on_progress is None:
            return
        stats = getattr(self, "sender", None)
        self.on_progress(
            UploadProgress(
                rows_read=self.tally.rows_read,
                bytes_read=sum(self.bytes_done.values()),
                bytes_total=self.bytes_total,
                events_sent=self.events_sent,
                events_rejected=self.tally.events_rejected + self.events_api_rejected,
                requests=stats.stats.requests if stats else 0,
                retries=stats.stats.retries if stats else 0,
            )
        )

    def _figures(self, elapsed: float) -> dict[str, Any]:
        stats = self.sender.stats
        result = figures(self.tally, self.options.timezone)
        result["events_rejected"] += self.events_api_rejected + self.skipped_refused_before
        result["rejects_by_cause"] += [
            {"cause": cause, "count": count, "examples": []}
            for cause, count in self.api_reject_causes.most_common()
        ]
        result.update(
            {
                "events_sent": self.events_sent,
                "delivered_by_event": dict(sorted(self.delivered_by_event.items())),
                "events_rejected_by_api": self.events_api_rejected,
                "events_skipped_already_sent": self.skipped_already_sent
                + (self.tracker.already_sent if self.tracker else 0),
                "events_refused_in_earlier_runs": self.skipped_refused_before,
                "possibly_resent": self.possibly_resent,
                "files_skipped": [{"file": f, "why": why} for f, why in self.skipped],
                "requests": stats.requests,
                "retries": stats.retries,
                "status_counts": {
                    str(k): v for k, v in sorted(Counter(stats.status_counts).items())
                },
                "elapsed_s": round(elapsed, 3),
                "events_per_s": round(self.events_sent / elapsed, 1) if elapsed > 0 else 0.0,
            }
        )
        return result
