"""The run loop: the offline pipeline feeding the sender, every answer told to the ledger.

A reader thread runs read → map → validate → ids → batches over the inputs of a resume
plan and hands typed messages to the event loop through a bounded queue (back-pressure
keeps memory flat); worker tasks take them: batches go to the sender (through the warm-up
policy), the rest to the ledger and the rejects sink. Rows an earlier run dealt with are
dropped after the id stage (so that duplicate collapsing sees the whole input).

Nothing here knows where the ledger is kept or who started the run: the same loop serves a
local upload and one partition of a distributed one.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field, replace

import httpx
import numpy as np

from uploader.batches import Batch, pack_batches
from uploader.duplicates import KeySet, split_key_blob
from uploader.errors import CheckpointError, OutputError, SendError
from uploader.event_ids import DuplicateTracker
from uploader.events import Events
from uploader.ledger import Ledger
from uploader.options import Options
from uploader.pipeline import Prepared, Tally, prepare_events
from uploader.progress import Observer, Progress, ReadMeter
from uploader.resume import ResumePlan
from uploader.send import Sender, WarmUp
from uploader.validation import RowReject

# Batches waiting between the reader thread and the senders: enough to keep every sender
# busy, and at most about QUEUE_EVENTS events, so that memory stays flat with large
# batches and many senders (16 senders x 5,000-event batches held 0.1 GB more at 10M rows).
QUEUE_BATCHES_PER_SENDER = 2
QUEUE_EVENTS = 40_000
# How often progress is reported to the shell, and the stop flag looked at.
PROGRESS_INTERVAL_S = 0.2


# What the reader thread hands to the event loop, besides batches.
@dataclass(frozen=True)
class Rejected:
    rejects: Sequence[RowReject]


@dataclass(frozen=True)
class Settled:
    """Rows that need no sending: rejected, or exact repeats of an earlier event."""

    file: str
    rows: np.ndarray


@dataclass(frozen=True)
class ChunkRead:
    file: str
    rows: int
    queued: int  # events handed on to be sent
    rejected: int


@dataclass(frozen=True)
class FileRead:
    file: str


@dataclass(frozen=True)
class ReadFailed:
    error: BaseException


@dataclass(frozen=True)
class EndOfInput:
    pass


Message = Batch | Rejected | Settled | ChunkRead | FileRead | ReadFailed | EndOfInput


@dataclass
class Delivery:
    """What the API did with this run's requests."""

    events_sent: int = 0
    by_event: Counter[str] = field(default_factory=Counter)
    events_refused: int = 0
    refused_causes: Counter[str] = field(default_factory=Counter)


class UploadRun:
    """One pass over a resume plan's inputs. `stop` (set by the caller, e.g. at a first
    Ctrl-C) stops reading and lets the requests in flight finish."""

    def __init__(
        self,
        plan: ResumePlan,
        options: Options,
        ledger: Ledger,
        sender: Sender,
        *,
        observer: Observer | None = None,
        on_rejects: Callable[[Sequence[RowReject]], None] | None = None,
        on_batch: Callable[[Batch], None] | None = None,
        stop: threading.Event | None = None,
        chunks: Iterator[Prepared] | None = None,
    ) -> None:
        self.plan = plan
        # Where the chunks come from: the plan's inputs through the row stages, or chunks
        # prepared elsewhere (a partition of a Spark job).
        self.chunks = chunks
        self.options = options
        self.ledger = ledger
        self.sender = sender
        self.observer = observer
        self.on_rejects = on_rejects
        self.on_batch = on_batch  # called in the reader thread as each batch is packed
        self.stop = stop or threading.Event()
        self.tally = Tally()  # the reader thread's; read by the loop for progress only
        self.delivery = Delivery()
        self.meter = ReadMeter(plan.to_read)
        self.warm_up = WarmUp()
        self._reader_done = threading.Event()
        self._workers: set[asyncio.Task[None]] = set()
        self._input_ended = False
        self._queued = 0  # events handed on to be sent (the reader thread counts)
        self._read_all = False  # the reader has read every input

    async def run(self) -> tuple[str, str | None]:
        """("completed" | "aborted" | "interrupted", why it did not complete)."""
        status, message = "completed", None
        try:
            await self._pump()
        except (SendError, OutputError) as exc:
            status, message = "aborted", str(exc)
        except CheckpointError as exc:  # the state file's disk filled up, or went away
            status, message = "aborted", str(exc)
        except httpx.HTTPError as exc:  # not retryable: a proxy or protocol problem
            status = "aborted"
            message = self.sender.credentials.redact(
                f"cannot talk to {self.sender.target.base_url}: {exc}"
            )
        if self.stop.is_set() and status == "completed" and self.ledger.unfinished():
            status, message = "interrupted", "stopped on request; run the same command to resume"
        return status, message

    # the reader thread
    def _read(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Message]) -> None:
        def emit(message: Message) -> None:
            future = asyncio.run_coroutine_threadsafe(queue.put(message), loop)
            while not self._halted():
                try:
                    future.result(timeout=PROGRESS_INTERVAL_S)
                    return
                except TimeoutError:
                    continue
            future.cancel()

        try:
            batches = pack_batches(
                self._events(emit), self.options.batch_size, self.options.max_request_bytes
            )
            for batch in batches:
                self.tally.add_batch(batch)  # the bytes packed; requests come from the sender
                if self.on_batch is not None:
                    self.on_batch(batch)
                emit(batch)
                if self._halted():
                    return
            emit(EndOfInput())
        except BaseException as exc:  # handed to the loop, which raises it there
            emit(ReadFailed(exc))

    def _prepared(self) -> Iterator[Prepared]:
        """The plan's inputs through the row stages."""
        sources = self.plan.to_read
        keep = self.options.keep_duplicates
        tracker = DuplicateTracker(keep)
        keys = self.plan.delivered_keys(sources)
        if keys and not keep:
            # Repeats of events delivered before are not sent again, even where their first
            # occurrence is not read again (a finished Parquet row group).
            tracker.previous = KeySet()
            tracker.previous.add(*split_key_blob(keys))
        try:
            # With --keep-duplicates occurrences are numbered by reading every row again.
            done = None if keep else self.plan
            yield from prepare_events(
                sources, self.options, self.tally, tracker=tracker, done=done, guard_orders=True
            )
        finally:
            tracker.close()

    def _events(self, emit: Callable[[Message], None]) -> Iterator[Events]:
        unread = [s.name for s in self.plan.to_read]
        chunks = self._prepared() if self.chunks is None else self.chunks
        try:
            for prepared in chunks:
                if self._halted():
                    return
                name = prepared.file
                while unread and unread[0] != name:
                    emit(FileRead(unread.pop(0)))
                self.meter.note(name, prepared.bytes_done)
                if prepared.rejects:
                    emit(Rejected(prepared.rejects))
                rejected = np.fromiter((r.row for r in prepared.rejects), np.int64)
                settled = np.concatenate((prepared.collapsed, rejected))
                if len(settled):
                    emit(Settled(name, settled))
                fresh = prepared.events
                resume = self.plan.files.get(name)
                if resume is not None:
                    fresh, sent_before, refused_before = resume.split(prepared.events)
                    self.tally.already_sent += sent_before
                    self.tally.refused_before += refused_before
                emit(ChunkRead(name, prepared.rows_read, len(fresh), len(prepared.rejects)))
                self._queued += len(fresh)
                yield fresh
            for name in unread:
                emit(FileRead(name))
            self._read_all = True
        finally:
            if isinstance(chunks, Generator):
                chunks.close()

    def _halted(self) -> bool:
        return self.stop.is_set() or self._reader_done.is_set()

    # the event loop side
    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        slots = self.sender.limiter.max_concurrency
        per_senders = QUEUE_BATCHES_PER_SENDER * slots
        by_events = QUEUE_EVENTS // self.options.batch_size
        queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=max(2, min(per_senders, by_events)))
        reader = threading.Thread(
            target=self._read, args=(loop, queue), name="uploader-reader", daemon=True
        )
        reader.start()
        ticker = asyncio.create_task(self._tick())
        try:
            self._spawn(queue)
            while self._workers:
                done, _ = await asyncio.wait(
                    self._workers, timeout=PROGRESS_INTERVAL_S, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    self._workers.discard(task)
                    error = task.exception()
                    if error is not None:
                        for other in self._workers:
                            other.cancel()
                        await asyncio.gather(*self._workers, return_exceptions=True)
                        raise error
                self._spawn(queue)
        finally:
            self._reader_done.set()
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            self.report_progress()
            await asyncio.to_thread(reader.join, 5)

    def _spawn(self, queue: asyncio.Queue[Message]) -> None:
        """As many workers as the limiter lets requests be in flight: each holds at most one
        batch, so a batch marked in flight is one being sent (or retried)."""
        if self._input_ended or self.stop.is_set():
            return
        while len(self._workers) < self.sender.limiter.limit:
            self._workers.add(asyncio.create_task(self._work(queue)))

    async def _work(self, queue: asyncio.Queue[Message]) -> None:
        while not self.stop.is_set() and len(self._workers) <= self.sender.limiter.limit:
            try:
                message = await asyncio.wait_for(queue.get(), PROGRESS_INTERVAL_S)
            except TimeoutError:
                continue
            match message:
                case Batch():
                    await self.warm_up.send(message, self._send)
                    self._spawn(queue)  # the limit may have grown
                case Rejected(rejects):
                    if self.on_rejects is not None:
                        self.on_rejects(rejects)
                case Settled(file, rows):
                    self.ledger.settled(file, rows)
                case ChunkRead(file, rows, queued, rejected):
                    self.ledger.read(file, rows, queued, rejected)
                case FileRead(file):
                    self.ledger.read_all(file)
                case ReadFailed(error):
                    raise error
                case EndOfInput():
                    self._input_ended = True
                    await queue.put(message)  # let the other workers see it too
                    return

    async def _send(self, batch: Batch) -> None:
        token = self.ledger.sending(batch)
        await self.sender.send_batch(batch, self._delivered, self._refused)
        self.ledger.answered(token, batch)

    async def _delivered(self, batch: Batch, status: int) -> None:
        self.ledger.delivered(batch)
        self.delivery.events_sent += len(batch)
        self.delivery.by_event.update(batch.events.name_counts())

    async def _refused(self, events: Events, reason: str) -> None:
        self.ledger.refused(events, reason)
        rejects = [RowReject(events.file, row, "api", reason) for row in events.rows.tolist()]
        self.delivery.events_refused += len(rejects)
        self.delivery.refused_causes.update(r.kind for r in rejects)
        if self.on_rejects is not None:
            self.on_rejects(rejects)

    async def _tick(self) -> None:
        while True:
            self.report_progress()
            await asyncio.sleep(PROGRESS_INTERVAL_S)

    def report_progress(self) -> None:
        if self.observer is None:
            return
        stats = self.sender.stats
        progress = Progress(
            rows_read=self.tally.rows_read,
            bytes_read=self.meter.bytes_read,
            bytes_total=self.meter.bytes_total,
            rows_total=self.meter.rows_total,
            events_sent=self.delivery.events_sent,
            events_rejected=self.tally.events_rejected + self.delivery.events_refused,
            requests=stats.requests,
            retries=stats.retries,
            events_settled=self.delivery.events_sent + self.delivery.events_refused,
            reading_done=self._read_all,
        )
        expected = ReadMeter.expected(self._queued, progress.read_share, self._read_all)
        self.observer(replace(progress, events_expected=expected))
