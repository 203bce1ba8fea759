"""The worker process that builds chunks beside the run: the same output as building them
in the run's process, errors raised with the same words, nothing left behind."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from uploader.cli import main
from uploader.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = [ROOT / "sample_data" / "interactions.csv", ROOT / "sample_data" / "interactions.parquet"]


def dry_run(tmp_path: Path, name: str, worker: str, *inputs: Path) -> tuple[bytes, bytes]:
    os.environ["UPLOADER_WORKER"] = worker
    out = tmp_path / name
    code = main(["upload", *map(str, inputs), "--dry-run", "--out", str(out), "-q",
                 "--batch-size", "37", "--keep-duplicates"])  # fmt: skip
    assert code in (0, 1)
    return (out / "requests.jsonl").read_bytes(), (out / "rejects.csv").read_bytes()


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.suffix)
def test_a_worker_builds_the_same_requests_and_rejects(tmp_path, sample, capsys):
    bad = ROOT / "sample_data" / "bad_rows.csv"
    here = dry_run(tmp_path, "here", "0", sample)
    there = dry_run(tmp_path, "there", "1", sample)
    assert here == there and here[0]
    assert dry_run(tmp_path, "bad-here", "0", bad) == dry_run(tmp_path, "bad-there", "1", bad)


def test_an_input_error_in_the_worker_is_raised_with_its_words(tmp_path, monkeypatch):
    from uploader import core
    from uploader.config import build_config

    broken = tmp_path / "broken.csv.gz"
    rows = b"".join(b"2024-05-02T14:38:24Z,view,S%d,u1\n" % i for i in range(20_000))
    whole = gzip.compress(b"ts,event,sku,user_id\n" + rows)
    broken.write_bytes(whole)
    config = build_config([str(broken)], command="validate")
    broken.write_bytes(whole[: len(whole) // 2])  # cut short after the inputs were found
    monkeypatch.setenv("UPLOADER_WORKER", "1")
    with pytest.raises(InputError, match=r"broken\.csv\.gz: cannot read past byte offset"):
        core.validate(config)


def test_a_worker_started_ahead_ends_with_its_command(tmp_path):
    # `uploader validate` on a missing file fails before any chunk is built: the worker
    # started ahead must not outlive the command.
    mark = f"worker-test-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "UPLOADER_WORKER": "1", "UPLOADER_TEST_MARK": mark}
    done = subprocess.run(
        [sys.executable, "-m", "uploader", "validate", str(tmp_path / "missing.csv")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2 and "no such file or folder" in done.stderr
    assert "Traceback" not in done.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _workers_marked(mark):
        time.sleep(0.1)
    assert not _workers_marked(mark)


def _workers_marked(mark: str) -> list[int]:
    """Worker processes still running that this test's command started (they inherit its
    environment, mark included): not another test's or session's."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if b"uploader.workers" in cmdline and f"UPLOADER_TEST_MARK={mark}".encode() in environ:
            found.append(int(entry))
    return found


def test_messages_cross_the_pipe_whole_however_the_pipe_cuts_them():
    import threading

    from uploader.workers import _read, _write

    message = ("built", bytes(range(256)) * 8192)  # 2 MB: many pipe buffers
    read_fd, write_fd = os.pipe()
    raw = open(write_fd, "wb", buffering=0)  # noqa: SIM115
    with open(read_fd, "rb", buffering=0) as reader:

        class Trickle:  # a pipe that takes at most 1,000 bytes a write
            def write(self, view):
                return raw.write(view[:1000])

        def send_twice():
            with raw:  # closed after: a short message ends in EOF, not a hang
                for _ in range(2):
                    _write(Trickle(), message)

        writer = threading.Thread(target=send_twice)
        writer.start()
        assert _read(reader) == message
        assert _read(reader) == message
        writer.join()
