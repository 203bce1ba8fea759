"""Where the per-chunk stages run: in this process, or in a worker process beside it.

The per-chunk stages (build.py: read, map, validate, ids, items) take most of a run's CPU;
the run-wide ones, the sender and the ledger take the rest. With two cores or more, a
worker process builds the chunks of the input files while this one settles and sends them
(bench/ measures both ways). Inputs held in memory (DataFrames, Arrow tables) are built
here: copying them to a worker would cost more than building them.

The worker is `python -m uploader.workers`: it reads one job (pickled) on stdin and writes
each built chunk back on stdout, length-prefixed. It can be started before the job is known
(`prestart`, called by the command line first thing), so that its imports run while this
process does its own.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import subprocess
import sys
import traceback
from collections.abc import Generator, Sequence
from typing import IO, Any

# The worker is worth its start-up from this many cores (one for it, one for the rest).
MIN_CPUS = 2
# Set to "0" to build in this process (the tests of the thread path use it).
ENV_SWITCH = "UPLOADER_WORKER"
_FRAME = struct.Struct("<Q")
_prestarted: subprocess.Popen[bytes] | None = None


def prestart() -> None:
    """Start a worker now, to be given its job later by `built_chunks`."""
    global _prestarted
    if _prestarted is None and _wanted():
        _prestarted = _spawn()


def discard() -> None:
    """Stop a worker started ahead that got no job."""
    global _prestarted
    if _prestarted is not None:
        _stop(_prestarted)
        _prestarted = None


def built_chunks(
    sources: Sequence[Any],
    options: Any,
    plans: dict[str, Any],
    *,
    chunk_rows: int,
    done: Any = None,
    count_first: bool = False,
) -> Generator[Any, None, None]:
    """uploader.build.build_chunks, in a worker process when that helps."""
    if not (_wanted() and sources and all(s.format != "table" for s in sources)):
        from uploader.build import build_chunks

        is_done = None if done is None else done.done_rows
        yield from build_chunks(
            sources, options, plans, chunk_rows=chunk_rows, done=is_done, count_first=count_first
        )
        return
    global _prestarted
    process, _prestarted = _prestarted or _spawn(), None
    try:
        assert process.stdin is not None and process.stdout is not None
        _write(process.stdin, (list(sources), options, plans, chunk_rows, done, count_first))
        process.stdin.close()
        while True:
            kind, payload = _read(process.stdout)
            if kind == "built":
                yield payload
            elif kind == "error":
                raise payload
            else:
                return
    finally:
        _stop(process)


def _wanted() -> bool:
    return os.environ.get(ENV_SWITCH, "1") != "0" and (os.cpu_count() or 1) >= MIN_CPUS


def _spawn() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "uploader.workers"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,  # raw pipes: _write and _read do their own loops
        env={**os.environ, ENV_SWITCH: "0"},
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            stream.close()
    if process.poll() is None:
        process.kill()
    process.wait()


# Messages cross on raw (unbuffered) pipes, each write and read looped until whole: through
# buffered streams, bytes went missing when a profiler stopped the processes (py-spy).
def _write(stream: IO[bytes], message: Any) -> None:
    """One message: its length, then its pickle, written whole whatever the pipe takes at
    a time."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    for part in (_FRAME.pack(len(data)), data):
        view = memoryview(part)
        while view:
            view = view[stream.write(view) or 0 :]


def _read(stream: IO[bytes]) -> Any:
    head = _read_exactly(stream, _FRAME.size)
    (size,) = _FRAME.unpack(head)
    return pickle.loads(_read_exactly(stream, size))


def _read_exactly(stream: IO[bytes], size: int) -> bytearray:
    """`size` bytes, however many reads the pipe gives them in."""
    data = bytearray(size)
    view, got = memoryview(data), 0
    while got < size:
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            from uploader.errors import UploaderError

            raise UploaderError(
                "the worker process that reads the input stopped unexpectedly; run the same "
                f"command again, or set {ENV_SWITCH}=0 to read in this process"
            )
        got += n
    return data


def _main() -> None:
    """The worker: one job from stdin, its chunks to stdout."""
    from uploader.build import build_chunks
    from uploader.errors import UploaderError

    source = open(0, "rb", buffering=0, closefd=False)  # noqa: SIM115
    out = open(1, "wb", buffering=0, closefd=False)  # noqa: SIM115
    try:
        job = _read(source)
    except UploaderError:  # started ahead, never given a job
        return
    sources, options, plans, chunk_rows, done, count_first = job
    try:
        is_done = None if done is None else done.done_rows
        chunks = build_chunks(
            sources, options, plans, chunk_rows=chunk_rows, done=is_done, count_first=count_first
        )
        for built in chunks:
            _write(out, ("built", built))
    except BrokenPipeError:  # the run stopped listening: stop too
        return
    except BaseException as exc:  # handed to the run, which raises it there
        if not isinstance(exc, UploaderError):  # a bug: keep where it happened
            exc.add_note("(in the worker process)\n" + "".join(traceback.format_exception(exc)))
        try:
            _write(out, ("error", exc))
        except Exception:  # not picklable: say what it was
            _write(out, ("error", RuntimeError(f"{type(exc).__name__}: {exc}")))
        return
    _write(out, ("end", None))


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        _main()
