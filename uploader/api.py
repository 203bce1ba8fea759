"""The Python API: validate and upload from a notebook or a script.

    import uploader
    check = uploader.validate(df, event_map={"wishlist": "ignore"})
    check.rejects          # a DataFrame: file, row, field, reason, then the original columns
    done = uploader.upload(df, sandbox=True, state="state.db")

The options are the command line's, as keyword arguments, and errors are the same
exceptions with the same messages. The same core runs underneath (plan_run, UploadRun):
this module builds the settings, runs them and shapes the results.

In-memory tables are recognised by content, as files are. A DataFrame is named after its
content fingerprint ("<DataFrame 1a2b3c4d>"), so re-running a cell on the same frame sends
nothing again (or resumes where an interrupted run stopped), while a different frame is a
new input: it is never refused as "a changed file" just because it is also a DataFrame.
To have a frame tracked like a file, name it: `upload({"orders": df})` calls it "<orders>",
and a different frame under a name whose rows were (partly) delivered is then refused,
offering restart=True or force=True, exactly as a changed file is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from types import TracebackType
from typing import Any

import pandas as pd
import pyarrow as pa

from uploader.checkpoint import fingerprint
from uploader.console import ReadDisplay, UploadDisplay, format_upload
from uploader.errors import ConfigError, InputError
from uploader.options import Options, build_options
from uploader.pipeline import plan_run
from uploader.read import Source, resolve_sources
from uploader.report import figures, format_summary, write_json
from uploader.results import (
    Collectors,
    UploadResult,
    ValidationResult,
    by_event_frame,
)
from uploader.sandbox import Sandbox
from uploader.send import DEFAULT_CONCURRENCY, DEFAULT_MAX_RETRY_TIME, RetryPolicy
from uploader.settings import check_sending, resolve_target
from uploader.target import Credentials, Target
from uploader.upload import DEFAULT_STATE, UploadOutcome, UploadRun, UploadSettings

MAPPING_OPTIONS = (*(f.name for f in fields(Options)), "config")
OUTPUT_OPTIONS = ("rejects", "report", "progress")
TARGET_OPTIONS = ("org", "project", "source_id", "api_key", "api_key_file", "base_url", "sandbox")
SENDING_OPTIONS = ("state", "concurrency", "rate", "max_retry_time", "force", "restart")
VALIDATE_OPTIONS = (*MAPPING_OPTIONS, *OUTPUT_OPTIONS)
UPLOAD_OPTIONS = (*VALIDATE_OPTIONS, *TARGET_OPTIONS, *SENDING_OPTIONS)
# Hex digits of the content fingerprint that name an unnamed in-memory table: enough to
# tell a notebook's frames apart. A clash only ever causes a "changed" refusal, never a skip
# (skipping compares the whole fingerprint).
NAME_DIGITS = 8
# How often the caller's thread wakes while an upload runs, to hear a kernel interrupt.
WAIT_SLICE_S = 0.1
# Said at the first interrupt: finishing the requests in flight can take a while.
STOPPING = "uploader: stopping after the requests in flight (interrupt again to stop at once)"


def validate(source: Any, **options: Any) -> ValidationResult:
    """Read, map and validate `source` (a DataFrame, an Arrow table, a path, a list of
    those, or {name: frame}); nothing is sent, so an interrupt simply stops it. Options as
    for `uploader validate`."""
    _check_known(options, VALIDATE_OPTIONS, "validate")
    mapping = _mapping_options(options)
    sources = _resolve_inputs(source)
    bar = ReadDisplay(sources, notebook=True) if options.get("progress", True) else None
    sinks = Collectors(sources, options.get("rejects"), bar)
    try:
        tally = plan_run(
            sources,
            mapping,
            on_batch=sinks.sampler,
            on_rejects=sinks.on_rejects,
            on_progress=bar,
        )
    except BaseException:
        sinks.close(ok=False)
        raise
    sinks.close(ok=True)
    result = figures(tally, mapping.timezone)
    if options.get("report"):
        write_json(os.fspath(options["report"]), result)
    return ValidationResult(
        figures=result,
        rejects=sinks.rejects.frame(),
        rejects_truncated=sinks.rejects.truncated,
        by_event=by_event_frame(tally.by_event),
        summary="\n".join([format_summary(tally), *sinks.notes()]),
        bodies=tuple(sinks.sampler.bodies),
    )


async def validate_async(source: Any, **options: Any) -> ValidationResult:
    """`validate` in a worker thread, so that the event loop stays free meanwhile."""
    return await asyncio.to_thread(validate, source, **options)


def upload(source: Any, **options: Any) -> UploadResult:
    """Upload `source` (as for `validate`) to Intempt, or to a sandbox with `sandbox=True` or
    `sandbox=<running Sandbox>`. Works where an event loop already runs (Jupyter): the
    upload runs on a private loop in a worker thread. A first interrupt (Ctrl-C, or the
    kernel's stop button) lets the requests in flight finish, saves the checkpoint and
    returns a result with status "interrupted": run the same call again to resume. A second
    interrupt cancels at once and raises KeyboardInterrupt (the checkpoint stays consistent;
    the requests cut off are counted as possibly resent by the next run)."""
    with _Upload(source, options) as call:
        return call.result(_run_interruptible(call.run))


async def upload_async(source: Any, **options: Any) -> UploadResult:
    """`upload` on the caller's event loop. Cancelling the task stops the upload at once,
    like a second interrupt: call `upload_async` again to resume."""
    with _Upload(source, options) as call:
        return call.result(await call.run.run())


def _resolve_inputs(source: Any) -> list[Source]:
    """Sources from a DataFrame, an Arrow table, a path, a list of those, or {name: frame};
    in-memory tables get names (see the module docstring)."""
    if isinstance(source, Mapping):
        items: list[tuple[Any, Any]] = list(source.items())
    elif isinstance(source, list | tuple):
        items = [(None, item) for item in source]
    else:
        items = [(None, source)]
    sources: list[Source] = []
    for name, item in items:
        if isinstance(item, pa.Table | pd.DataFrame):
            sources.extend(_named(s, name, item) for s in resolve_sources([item]))
        elif name is not None:
            raise ConfigError(f"{{{name!r}: ...}}: only DataFrames and Arrow tables take a name")
        elif isinstance(item, str | os.PathLike):
            sources.extend(resolve_sources([item]))
        else:
            raise InputError(
                f"cannot read a {type(item).__name__}: give a DataFrame, an Arrow table, "
                "a path (file, folder or glob), or a list of them"
            )
    # The same file named twice, or the same frame passed twice, is read once.
    seen: set[str] = set()
    unique = []
    for s in sources:
        if s.name not in seen:
            seen.add(s.name)
            unique.append(s)
    return unique or resolve_sources([])  # the reader's own "no input given" message


def _named(source: Source, name: Any, item: Any) -> Source:
    if name is None:
        kind = "Arrow table" if isinstance(item, pa.Table) else "DataFrame"
        name = f"{kind} {fingerprint(source).partition(':')[2][:NAME_DIGITS]}"
    elif not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a frame's name must be a non-empty string; got {name!r}")
    return replace(source, name=f"<{name}>")


def _check_known(given: Mapping[str, Any], known: Sequence[str], call: str) -> None:
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    hint = ""
    if call == "validate" and all(name in UPLOAD_OPTIONS for name in unknown):
        hint = " (upload options: validate sends nothing)"
    raise ConfigError(
        f"unknown option {', '.join(unknown)}{hint}; known options: {', '.join(sorted(known))}"
    )


def _mapping_options(given: Mapping[str, Any]) -> Options:
    config = given.get("config")
    names = {f.name for f in fields(Options)}
    return build_options(
        os.fspath(config) if config is not None else None,
        **{k: v for k, v in given.items() if k in names},
    )


class _Upload:
    """One upload call: options checked, target chosen (a sandbox started if asked), sinks
    open. A context manager, so that the sandbox stops and files close whatever happens."""

    def __init__(self, source: Any, options: Mapping[str, Any]) -> None:
        _check_known(options, UPLOAD_OPTIONS, "upload")
        self.options = options
        mapping = _mapping_options(options)
        concurrency = options.get("concurrency", DEFAULT_CONCURRENCY)
        check_sending(concurrency, options.get("rate"))
        max_retry_time = options.get("max_retry_time", DEFAULT_MAX_RETRY_TIME)
        RetryPolicy(max_retry_time=max_retry_time)  # a bad value stops us before any state
        sources = _resolve_inputs(source)
        self.stack = contextlib.ExitStack()
        self.sandbox: Sandbox | None = None
        try:
            target, credentials = self._target()
            settings = UploadSettings(
                target=target,
                credentials=credentials,
                state=os.fspath(options.get("state") or DEFAULT_STATE),
                concurrency=concurrency,
                rate=options.get("rate"),
                max_retry_time=max_retry_time,
                force=bool(options.get("force")),
                restart=bool(options.get("restart")),
            )
            bars = (
                UploadDisplay(quiet=False, notebook=True) if options.get("progress", True) else None
            )
            self.sinks = Collectors(sources, options.get("rejects"), bars)
            self.run = UploadRun(
                sources,
                mapping,
                settings,
                on_progress=bars,
                on_rejects=self.sinks.on_rejects,
                on_batch=self.sinks.sampler,
            )
        except BaseException:
            self.stack.close()
            raise

    def _target(self) -> tuple[Target, Credentials]:
        given = self.options
        sandbox = given.get("sandbox")
        if sandbox is None or sandbox is False:
            api_key = given.get("api_key")
            if api_key is not None and not isinstance(api_key, str):
                raise ConfigError("api_key must be a string, the key PREFIX.SECRET")
            return resolve_target(
                org=given.get("org"),
                project=given.get("project"),
                source_id=given.get("source_id"),
                api_key=api_key,
                api_key_file=given.get("api_key_file"),
                base_url=given.get("base_url"),
            )
        clash = [k for k in TARGET_OPTIONS if k != "sandbox" and given.get(k) is not None]
        if clash:
            raise ConfigError(
                f"sandbox= uploads to the local sandbox; leave out {', '.join(clash)}"
            )
        if sandbox is True:
            sandbox = self.stack.enter_context(Sandbox())
        elif not isinstance(sandbox, Sandbox):
            raise ConfigError(f"sandbox= takes True or a running Sandbox; got {sandbox!r}")
        try:
            base_url = sandbox.base_url
        except RuntimeError as exc:
            raise ConfigError(
                "sandbox=: this Sandbox is not running; use `with Sandbox() as sb:` or sb.start()"
            ) from exc
        self.sandbox = sandbox
        target = Target(base_url, sandbox.org, sandbox.project, sandbox.source)
        return target, Credentials.from_key(sandbox.api_key)

    def result(self, outcome: UploadOutcome) -> UploadResult:
        self.sinks.close(ok=True)
        result = dict(outcome.figures, status=outcome.status)
        if self.options.get("report"):
            write_json(os.fspath(self.options["report"]), result)
        summary = [
            format_summary(outcome.tally, planned=False)
            if outcome.tally.files
            else "Nothing to read: every input was uploaded before.",
            format_upload(outcome),
            *self.sinks.notes(),
        ]
        stats = self.sandbox.stats() if self.sandbox is not None else None
        if stats is not None:
            summary.append(
                f"The sandbox stored {stats['events']:,} events "
                f"({stats['unique_event_ids']:,} distinct ids) from {stats['requests']:,} requests."
            )
        return UploadResult(
            figures=result,
            rejects=self.sinks.rejects.frame(),
            rejects_truncated=self.sinks.rejects.truncated,
            by_event=by_event_frame(
                outcome.tally.by_event, outcome.figures["delivered_by_event"], upload=True
            ),
            summary="\n".join(summary),
            bodies=tuple(self.sinks.sampler.bodies),
            status=outcome.status,
            message=outcome.message,
            skipped_files=outcome.skipped_files,
            sandbox_stats=stats,
        )

    def __enter__(self) -> _Upload:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.sinks.close(ok=False)  # no-op when result() closed them
        self.stack.close()


def _run_interruptible(run: UploadRun) -> UploadOutcome:
    """Run the upload on a private event loop in a worker thread. That works whether or not
    the caller's thread runs a loop (Jupyter does), and it leaves the caller's thread free to
    hear an interrupt at any moment, which asyncio.run's own handling would turn into an
    abrupt cancel: here the first one asks the run to stop gracefully."""
    box: dict[str, Any] = {}
    finished = threading.Event()

    async def main() -> UploadOutcome:
        box["loop"], box["task"] = asyncio.get_running_loop(), asyncio.current_task()
        return await run.run()

    def work() -> None:
        try:
            box["outcome"] = asyncio.run(main())
        except BaseException as exc:  # handed to the caller's thread, which raises it
            box["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=work, name="uploader-api", daemon=True).start()
    interrupts = 0
    while True:
        try:
            while not finished.wait(WAIT_SLICE_S):
                pass
            break
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts == 1:
                print(STOPPING, file=sys.stderr)
                run.request_stop()
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
    outcome: UploadOutcome = box["outcome"]
    return outcome
