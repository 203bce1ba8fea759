"""Factory fixtures: real files on disk, written the way warehouse exports are."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from uploader.checkpoint import Checkpoint
from uploader.inputs import Source, resolve_inputs
from uploader.options import Options, build_options
from uploader.pipeline import Tally, plan_run
from uploader.read import resolve_sources

INTERACTIONS_HEADER = "event_time,event_type,product_id,user_id,price,quantity"

# A shell that starts the tests in the background (`make test &`) hands them Ctrl-C
# ignored, and every process they start inherits that: the tests of Ctrl-C would wait for
# an interrupt that never comes. They get Python's own handler back.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """write_csv(text, name="x.csv") writes text (compressed by the name's suffix)."""

    def write(text: str, name: str = "input.csv") -> Path:
        path = tmp_path / name
        codec = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd"}.get(path.suffix)
        with pa.output_stream(str(path), compression=codec) as out:
            out.write(text.encode("utf-8"))
        return path

    return write


@pytest.fixture
def write_toml(tmp_path: Path) -> Callable[..., str]:
    """write_toml(text, name="uploader.toml") writes a --config file; returns its path."""

    def write(text: str, name: str = "uploader.toml") -> str:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write


@pytest.fixture
def csv_sources(write_csv: Callable[..., Path]) -> Callable[..., list[Source]]:
    """csv_sources(**{"a.csv": text, ...}) writes the files and finds them, in that order."""

    def make(**files: str) -> list[Source]:
        return resolve_inputs([write_csv(text, name) for name, text in files.items()])

    return make


@pytest.fixture
def write_parquet(tmp_path: Path) -> Callable[..., Path]:
    def write(table: pa.Table, name: str = "input.parquet", row_group_size: int = 1000) -> Path:
        path = tmp_path / name
        pq.write_table(table, path, row_group_size=row_group_size)
        return path

    return write


@pytest.fixture
def run_plan() -> Callable[..., tuple[Tally, list[Any], list[Any]]]:
    """run_plan(inputs, **options) -> (tally, batches, rejects)."""

    def run(
        inputs: Sequence[Any], chunk_rows: int = 65_536, **options: Any
    ) -> tuple[Tally, list[Any], list[Any]]:
        opts: Options = build_options(None, **options)
        batches: list[Any] = []
        rejects: list[Any] = []
        tally = plan_run(
            resolve_sources(inputs, encoding=opts.encoding, delimiter=opts.delimiter),
            opts,
            on_batch=batches.append,
            on_rejects=rejects.extend,
            chunk_rows=chunk_rows,
        )
        return tally, batches, rejects

    return run


@pytest.fixture
def open_checkpoint(tmp_path: Path) -> Iterator[Callable[..., Checkpoint]]:
    """open_checkpoint(name="state.db") opens a real state file in tmp_path (the same name
    again: the same file, as a later run sees it); every one is closed at the end."""
    opened: list[Checkpoint] = []

    def open_(name: str = "state.db") -> Checkpoint:
        checkpoint = Checkpoint(str(tmp_path / name))
        opened.append(checkpoint)
        return checkpoint

    yield open_
    for checkpoint in opened:
        checkpoint.close()


@pytest.fixture(autouse=True)
def _build_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks are built in the test's own process (a worker process costs half a second to
    start); tests/test_workers.py covers the worker."""
    monkeypatch.setenv("UPLOADER_WORKER", "0")


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which a file made without a mode of its own is readable by
    every user: the tests of files kept to their owner then show it."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@dataclass(frozen=True)
class Tmpfs:
    """A small RAM disk mounted for one test."""

    path: Path

    def free(self) -> int:
        """Bytes an unprivileged writer can still put on it."""
        info = os.statvfs(self.path)
        return info.f_bavail * info.f_frsize

    def remount(self, *options: str) -> None:
        """remount("ro"): the disk turns read-only under whatever uses it."""
        _mount("-o", ",".join(("remount", *options)), str(self.path))


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Tmpfs]]:
    """tmpfs("1m") mounts a tmpfs of that size in tmp_path, for the disks that fill up or
    turn read-only. Mounting needs root (as on the CI machine): where it is refused, the
    test is skipped. Every disk is unmounted at the end, whatever the test did."""
    mounted: list[Path] = []

    def mount(size: str) -> Tmpfs:
        path = tmp_path / f"disk{len(mounted)}"
        path.mkdir()
        try:
            _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
        except (OSError, subprocess.CalledProcessError) as exc:
            pytest.skip(f"cannot mount a tmpfs here: {getattr(exc, 'stderr', '') or exc}")
        mounted.append(path)
        return Tmpfs(path)

    try:
        yield mount
    finally:
        for path in mounted:
            done = subprocess.run(["umount", str(path)], capture_output=True, check=False)
            if done.returncode != 0:  # still busy: detach it now, gone once it is let go
                subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], capture_output=True, text=True, check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 in server mode on 127.0.0.1, for pyarrow's real S3 client to talk to."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto server did not start")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)
