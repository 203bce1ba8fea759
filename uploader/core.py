"""The core's two entries: a validation pass and an upload, each from one RunConfig to one
result record. Both shells call these and only show what comes back.

They own what a run writes besides the API (the rejects file, the dry run's request
bodies, the report), start the sandbox when one is asked for, and for an upload open the
state file, plan the resume and run the loop. Progress leaves through an observer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import httpx

from uploader.batches import Batch
from uploader.checkpoint import Checkpoint
from uploader.config import AUTO_MAX, Destination, Outputs, RunConfig, Sending
from uploader.contract import EVENT_NAMES
from uploader.errors import CheckpointError, OutputError
from uploader.inputs import Source
from uploader.lease import RunLease
from uploader.ledger import StateLedger
from uploader.options import Options
from uploader.pacing import AdaptiveConcurrency
from uploader.pipeline import Tally, plan_run, plan_sources
from uploader.progress import Observer, SandboxStarted, Stopping, WaitingForLease
from uploader.results import CauseCount, FileFigures, UploadResult, ValidationResult
from uploader.send import RetryPolicy, Sender
from uploader.sinks import BodiesWriter, RejectsWriter, write_json
from uploader.target import Credentials, Target
from uploader.upload_run import UploadRun
from uploader.validation import RowReject

# How often the caller's thread wakes while an upload runs, to hear an interrupt.
WAIT_SLICE_S = 0.1


def validate(config: RunConfig, observer: Observer | None = None) -> ValidationResult:
    """Read, map, validate, id and pack every row; send nothing. With `outputs.bodies` the
    request bodies are written in send order (a dry run)."""
    sinks = RunSinks(config.outputs, config.inputs)
    try:
        tally = plan_run(
            config.inputs,
            config.mapping,
            on_batch=sinks.on_batch,
            on_rejects=sinks.on_rejects,
            observer=observer,
        )
    except BaseException:
        sinks.close(ok=False)
        raise
    sinks.close(ok=True)
    result = ValidationResult(**_read_figures(tally, config.mapping), **sinks.figures())
    if config.outputs.report:
        write_json(config.outputs.report, result.to_json())
    return result


def upload(
    config: RunConfig,
    observer: Observer | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> UploadResult:
    """`upload_async` on a private event loop in a worker thread. That works whether or not
    the caller's thread runs a loop (Jupyter does), and leaves the caller's thread free to
    hear an interrupt at any moment: the first one stops the run gracefully (the requests
    in flight finish, the result says "interrupted"); the second cancels it at once and
    raises KeyboardInterrupt (the state file stays consistent)."""
    stop = threading.Event()
    box: dict[str, Any] = {}
    finished = threading.Event()

    async def main() -> UploadResult:
        box["loop"], box["task"] = asyncio.get_running_loop(), asyncio.current_task()
        return await upload_async(config, observer, transport=transport, stop=stop)

    def work() -> None:
        try:
            box["result"] = asyncio.run(main())
        except BaseException as exc:  # handed to the caller's thread, which raises it
            box["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=work, name="uploader-run", daemon=True).start()
    interrupts = 0
    while True:
        try:
            while not finished.wait(WAIT_SLICE_S):
                pass
            break
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts == 1:
                stop.set()
                if observer is not None:
                    observer(Stopping())
            elif interrupts == 2:
                if "task" in box:
                    with contextlib.suppress(RuntimeError):  # the loop has just finished
                        box["loop"].call_soon_threadsafe(box["task"].cancel)
            else:
                raise
    if interrupts > 1:
        raise KeyboardInterrupt
    if "error" in box:
        raise box["error"]
    result: UploadResult = box["result"]
    return result


async def upload_async(
    config: RunConfig,
    observer: Observer | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    stop: threading.Event | None = None,
) -> UploadResult:
    """Upload on the running loop. Cancelling it stops at once; `stop.set()` stops after
    the requests in flight."""
    if config.destination is None:
        raise ValueError("an upload needs a destination (a target or a sandbox)")
    plan_sources(config.inputs, config.mapping)  # a bad mapping stops the run before any state
    with _destination(config.destination, observer) as (target, credentials, sandbox):
        sinks = RunSinks(config.outputs, config.inputs)
        try:
            async with _leased(config.sending, observer, stop):
                result = await _upload(
                    config, target, credentials, sinks, observer, transport, sleep, stop
                )
        except BaseException:
            sinks.close(ok=False)
            raise
        try:
            sinks.close(ok=True)
        except OutputError as exc:
            result = _aborted(result, exc)
    if sandbox is not None:
        result = replace(result, sandbox_stats=sandbox.stats())
    if config.outputs.report:
        try:
            write_json(config.outputs.report, result.to_json())
        except OutputError as exc:
            result = _aborted(result, exc)
    return result


def _aborted(result: UploadResult, error: OutputError) -> UploadResult:
    """A file the run writes that cannot be finished, once the run has sent: the run ends
    as aborted (resumable) and its figures are shown, rather than as an error before
    sending (which says that nothing was sent)."""
    message = f"{result.message}; and {error}" if result.message else str(error)
    return replace(result, status="aborted", message=message)


@contextlib.asynccontextmanager
async def _leased(
    sending: Sending, observer: Observer | None, stop: threading.Event | None
) -> AsyncIterator[None]:
    """The run lease of the state file, held while the upload runs (lease.py)."""

    def waiting(holder: str) -> None:
        if observer is not None:
            observer(WaitingForLease(holder))

    lease = RunLease(sending.state, wait=sending.wait, on_wait=waiting, stop=stop)
    await asyncio.to_thread(lease.__enter__)  # waiting for it must not block the loop
    try:
        yield
    finally:
        lease.__exit__(None, None, None)


async def _upload(
    config: RunConfig,
    target: Target,
    credentials: Credentials,
    sinks: RunSinks,
    observer: Observer | None,
    transport: httpx.AsyncBaseTransport | None,
    sleep: Callable[[float], Awaitable[None]],
    stop: threading.Event | None,
) -> UploadResult:
    sending = config.sending
    checkpoint = Checkpoint(sending.state)
    try:
        ledger = StateLedger(checkpoint, target)
        try:
            plan = ledger.plan(config.inputs, force=sending.force, restart=sending.restart)
            started = time.monotonic()
            pinned = sending.concurrency
            limiter = AdaptiveConcurrency(pinned or AUTO_MAX, adaptive=pinned is None,
                                          rate=sending.rate)  # fmt: skip
            async with Sender(
                target,
                credentials,
                policy=RetryPolicy(max_retry_time=sending.max_retry_time),
                limiter=limiter,
                transport=transport,
                sleep=sleep,
            ) as sender:
                run = UploadRun(
                    plan,
                    config.mapping,
                    ledger,
                    sender,
                    observer=observer,
                    on_rejects=sinks.on_rejects,
                    on_batch=sinks.on_batch,
                    stop=stop,
                )
                status, message = await run.run()
        except BaseException as exc:
            with contextlib.suppress(CheckpointError):  # a full disk may refuse this too
                ledger.fail_run(exc)
            raise
        elapsed = time.monotonic() - started
        tally, delivery, stats = run.tally, run.delivery, sender.stats
        figures = _read_figures(tally, config.mapping)
        result = UploadResult(
            **{
                **figures,
                "events_rejected": figures["events_rejected"]
                + delivery.events_refused
                + tally.refused_before,
                "requests": stats.requests,
            },
            **sinks.figures(),
            status=status,
            message=message,
            events_sent=delivery.events_sent,
            delivered_by_event=dict(delivery.by_event),
            events_rejected_by_api=delivery.events_refused,
            api_rejects_by_cause=tuple(
                CauseCount(cause, count) for cause, count in delivery.refused_causes.most_common()
            ),
            events_skipped_already_sent=tally.already_sent,
            events_refused_in_earlier_runs=tally.refused_before,
            possibly_resent=plan.possibly_resent,
            skipped_files=plan.skipped,
            retries=stats.retries,
            status_counts={str(k): v for k, v in sorted(stats.status_counts.items())},
            elapsed_s=round(elapsed, 3),
            events_per_s=round(delivery.events_sent / elapsed, 1) if elapsed > 0 else 0.0,
            concurrency={
                "mode": "adaptive" if limiter.adaptive else "pinned",
                "settled": limiter.limit,
                "highest": limiter.highest,
            },
        )
        try:
            ledger.close_run(status, result.to_json())
        except CheckpointError as exc:  # the run's record only: what was delivered is saved
            if status == "completed":
                result = replace(result, status="aborted", message=str(exc))
        return result
    finally:
        checkpoint.close()


@contextlib.contextmanager
def _destination(
    destination: Destination, observer: Observer | None
) -> Iterator[tuple[Target, Credentials, Any]]:
    """(target, key, the sandbox if one is used), starting a sandbox for the run if asked."""
    if destination.sandbox is None:
        assert destination.target is not None and destination.credentials is not None
        yield destination.target, destination.credentials, None
        return
    from uploader.sandbox import Sandbox

    with contextlib.ExitStack() as stack:
        sandbox = destination.sandbox
        if sandbox is True:
            sandbox = stack.enter_context(Sandbox())
        if observer is not None:
            observer(SandboxStarted(sandbox.base_url))
        target = Target(sandbox.base_url, sandbox.org, sandbox.project, sandbox.source)
        yield target, Credentials.from_key(sandbox.api_key), sandbox


class RunSinks:
    """A run's side streams: rejected rows (to the rejects file, and the first few kept in
    memory) and request bodies (to the dry run's file, and the first few kept)."""

    def __init__(self, outputs: Outputs, sources: Sequence[Source]) -> None:
        self.outputs = outputs
        self.columns = tuple(c for s in sources for c in s.columns)
        self.kept_rejects: list[RowReject] = []
        self.rejects_seen = 0
        self.bodies: list[bytes] = []
        self.closed = False
        self.rejects = RejectsWriter(outputs.rejects, self.columns) if outputs.rejects else None
        try:
            self.requests = BodiesWriter(outputs.bodies) if outputs.bodies else None
        except BaseException:
            if self.rejects is not None:
                self.rejects.abandon()
            raise

    def on_rejects(self, rejects: Sequence[RowReject]) -> None:
        room = max(self.outputs.keep_rejects - len(self.kept_rejects), 0)
        self.kept_rejects.extend(rejects[:room])
        self.rejects_seen += len(rejects)
        if self.rejects is not None:
            self.rejects.write(rejects)

    def on_batch(self, batch: Batch) -> None:
        if len(self.bodies) < self.outputs.keep_bodies:
            self.bodies.append(batch.body)
        if self.requests is not None:
            self.requests.write(batch.body)

    def close(self, *, ok: bool) -> None:
        """Idempotent; `ok=False` drops the half-written files."""
        if self.closed:
            return
        self.closed = True
        for writer in (self.rejects, self.requests):
            if writer is not None:
                writer.close() if ok else writer.abandon()

    def figures(self) -> dict[str, Any]:
        return {
            "rejects_path": self.outputs.rejects,
            "rejects_written": self.rejects.count if self.rejects else 0,
            "rejects_seen": self.rejects_seen,
            "bodies_path": self.outputs.bodies,
            "columns": self.columns,
            "kept_rejects": tuple(self.kept_rejects),
            "bodies": tuple(self.bodies),
        }


def _read_figures(tally: Tally, options: Options) -> dict[str, Any]:
    """The figures of the offline stages, as ValidationResult fields."""
    return {
        "rows_read": tally.rows_read,
        "events_valid": tally.events_valid,
        "events_rejected": tally.events_rejected,
        "duplicates_collapsed": tally.duplicates_collapsed,
        "rows_ignored": tally.rows_ignored,
        "rows_skipped_done_before": tally.rows_skipped,
        "ids_normalised": tally.ids_normalised,
        "duplicates": options.duplicates,
        "repeats_by_event": {
            EVENT_NAMES[code]: int(n) for code, n in enumerate(tally.collapsed_by_code) if n
        },
        "order_repeat": tally.first_order_repeat,
        "catalog": None if tally.catalog is None else dataclasses.asdict(tally.catalog),
        "unknown_products": tally.unknown_products,
        "valid_by_event": dict(tally.by_event),
        "rejects_by_cause": tuple(
            CauseCount(cause, count, tuple(tally.reject_examples[cause]))
            for cause, count in tally.reject_causes.most_common()
        ),
        "files": tuple(
            FileFigures(name, rows, tally.plans[name], tally.dialects.get(name))
            for name, rows in tally.files.items()
        ),
        "timestamps": dict(tally.timestamps.most_common()),
        "timezone": options.timezone,
        "requests": tally.requests,
        "request_bytes": tally.bytes,
    }
