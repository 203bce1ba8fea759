"""The Python API: validate and upload from a notebook or a script.

    import uploader
    check = uploader.validate(df, event_map={"wishlist": "ignore"})
    check.rejects          # a DataFrame: file, row, field, reason, then the original columns
    done = uploader.upload(df, sandbox=True, state="state.db")

The options are the command line's, as keyword arguments, and errors are the same
exceptions with the same messages: this module builds the same config as the command line
(config.py), calls the same core (core.py) and returns its result record (results.py).

In-memory tables are recognised by content, as files are (see inputs.resolve_inputs): the
same frame run again sends nothing new, a different frame is a new input, and a frame
given a name (`upload({"orders": df})`) is tracked like a file of that name.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uploader import core, results
from uploader.config import RunConfig, build_config
from uploader.console import ReadDisplay, UploadDisplay
from uploader.results import UploadResult, ValidationResult

# Said at the first interrupt: finishing the requests in flight can take a while.
STOPPING = "uploader: stopping after the requests in flight (interrupt again to stop at once)"


def validate(source: Any, **options: Any) -> ValidationResult:
    """Read, map and validate `source` (a DataFrame, an Arrow table, a path, a list of
    those, or {name: frame}); nothing is sent, so an interrupt simply stops it. Options as
    for `uploader validate`, and `progress=False` to hide the bar."""
    progress = options.pop("progress", True)
    config = _config(source, "validate", options)
    bar = ReadDisplay(notebook=True) if progress else None
    try:
        return core.validate(config, bar)
    finally:
        if bar is not None:
            bar.close()


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
    progress = options.pop("progress", True)
    config = _config(source, "upload", options)
    bars = UploadDisplay(quiet=not progress, notebook=True, stopping=STOPPING)
    try:
        return core.upload(config, bars)
    finally:
        bars.close()


async def upload_async(source: Any, **options: Any) -> UploadResult:
    """`upload` on the caller's event loop. Cancelling the task stops the upload at once,
    like a second interrupt: call `upload_async` again to resume."""
    progress = options.pop("progress", True)
    config = _config(source, "upload", options)
    bars = UploadDisplay(quiet=not progress, notebook=True, stopping=STOPPING)
    try:
        return await core.upload_async(config, bars)
    finally:
        bars.close()


def _config(source: Any, command: str, options: dict[str, Any]) -> RunConfig:
    return build_config(
        source,
        command=command,
        keep_rejects=results.REJECTS_KEPT,
        keep_bodies=results.PAYLOADS_KEPT,
        **options,
    )
