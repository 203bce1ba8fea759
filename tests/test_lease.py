"""One run at a time per state file: real `uploader` processes against the sandbox, the
lease held, refused, waited for, and released by a kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from uploader import core
from uploader.cli import main
from uploader.config import build_config
from uploader.errors import CheckpointError
from uploader.lease import RunLease
from uploader.progress import WaitingForLease
from uploader.sandbox import Sandbox

ROWS = 400
# Slow enough that a run of ROWS events in requests of BATCH is still going when the test
# looks at it; the tests that need it to be still going stop it (SIGSTOP) rather than race.
LATENCY_MS = 20
BATCH = 10
HOST = socket.gethostname()


def export(rows: int) -> str:
    lines = [f"{1_700_000_000 + i},view,SKU-{i},u{i % 7}" for i in range(rows)]
    return "ts,event,sku,user_id\n" + "\n".join(lines) + "\n"


def upload_args(sb: Sandbox, path: Path, state: Path, *more: str) -> list[str]:
    return [
        "upload", str(path), "--base-url", sb.base_url, "--org", sb.org, "--project", sb.project,
        "--source", sb.source, "--state", str(state), "--batch-size", str(BATCH),
        "--concurrency", "1", "--quiet", *more,
    ]  # fmt: skip


def holder_of(state: Path) -> dict[str, Any]:
    """What the lock file says about the run holding the lease ({} when none)."""
    try:
        text = Path(f"{state}.lock").read_text()
    except FileNotFoundError:
        return {}
    return json.loads(text) if text else {}


def refused(state: Path, holder: dict[str, Any], stopped: bool = False) -> str:
    waited = " (stopped waiting)" if stopped else ""
    return (
        f"state file {state} is in use by another run{waited}: pid {holder['pid']} on "
        f"{holder['host']}, started {holder['started']}; nothing was sent. Two runs on one "
        "state file would send events twice: let that run end, or give --wait to wait for it"
    )


@pytest.fixture
def spawn(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """spawn(sb, argv): `uploader ARGV` in a child process with the sandbox's key; every
    child is let go on (if stopped) and killed at the end."""
    children: list[subprocess.Popen[bytes]] = []

    def start(sb: Sandbox, argv: list[str]) -> subprocess.Popen[bytes]:
        monkeypatch.setenv("INTEMPT_API_KEY", sb.api_key)  # the child's, and main()'s here
        child = subprocess.Popen(
            [sys.executable, "-m", "uploader", *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGCONT)
            child.kill()
        child.wait()


def wait_for_lease(child: subprocess.Popen[bytes], state: Path, sb: Sandbox) -> dict[str, Any]:
    """Once the child holds the lease and is sending (some events stored): the lock file's
    record of it."""
    while (holder := holder_of(state)).get("pid") != child.pid or sb.stats()["events"] < BATCH:
        assert child.poll() is None, "the first run ended before the test could look"
        time.sleep(0.005)
    return holder


def possibly_resent(state: Path) -> int:
    db = sqlite3.connect(state)
    try:
        return int(db.execute("SELECT COALESCE(SUM(possibly_resent), 0) FROM runs").fetchone()[0])
    finally:
        db.close()


def test_a_second_run_on_the_same_state_exits_2_naming_the_first_and_sends_nothing(
    write_csv, tmp_path, spawn, capsys
):
    path = write_csv(export(ROWS))
    state, report = tmp_path / "state.db", tmp_path / "first.json"
    with Sandbox(latency_ms=LATENCY_MS) as sb:
        first = spawn(sb, upload_args(sb, path, state, "--report", str(report)))
        holder = wait_for_lease(first, state, sb)
        first.send_signal(signal.SIGSTOP)  # mid-run, holding the lease until told to go on
        try:
            code = main(upload_args(sb, path, state))
            out, err = capsys.readouterr()
            status_code = main(["status", "--state", str(state)])
            status = capsys.readouterr()
        finally:
            first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=60) == 0
        stats = sb.stats()
    assert holder["host"] == HOST
    assert code == 2
    assert out == ""
    assert err == f"uploader: error: {refused(state, holder)}\n"
    # `uploader status` reads the state file while a run holds it and writes to it.
    assert status_code == 0, status.err
    assert "running" in status.out.splitlines()[1]
    # Every request the API saw was the first run's, and it stored each event once.
    assert stats["requests"] == json.loads(report.read_text())["requests"]
    assert stats["events"] == stats["unique_event_ids"] == ROWS


def test_after_a_kill_9_of_the_holder_the_next_run_gets_the_lease_at_once(
    write_csv, tmp_path, spawn, capsys
):
    path = write_csv(export(ROWS))
    state = tmp_path / "state.db"
    with Sandbox(latency_ms=LATENCY_MS) as sb:
        first = spawn(sb, upload_args(sb, path, state))
        wait_for_lease(first, state, sb)
        while sb.stats()["events"] < ROWS // 4 and first.poll() is None:
            time.sleep(0.005)
        first.kill()
        first.wait()
        assert sb.stats()["unique_event_ids"] < ROWS  # killed mid-run
        assert holder_of(state)["pid"] == first.pid  # its record outlives it; its lock did not
        code = main(upload_args(sb, path, state))  # no --wait: exit 2 if the lease were held
        err = capsys.readouterr().err
        stats = sb.stats()
    assert code == 0, err
    assert stats["unique_event_ids"] == ROWS  # nothing lost
    # Only events the killed run had in flight were sent twice, and the next run counted them.
    assert stats["duplicate_events"] <= possibly_resent(state)


def test_with_wait_the_second_run_waits_then_finds_the_file_uploaded(
    write_csv, tmp_path, spawn, capsys
):
    path = write_csv(export(ROWS))
    state, report = tmp_path / "state.db", tmp_path / "first.json"
    with Sandbox(latency_ms=LATENCY_MS) as sb:
        first = spawn(sb, upload_args(sb, path, state, "--report", str(report)))
        holder = wait_for_lease(first, state, sb)
        first.send_signal(signal.SIGSTOP)
        codes: list[int] = []
        second = threading.Thread(
            target=lambda: codes.append(main([*upload_args(sb, path, state), "--wait"]))
        )
        second.start()
        try:
            out, err = "", ""
            while "uploader: waiting" not in err and second.is_alive():
                time.sleep(0.01)
                captured = capsys.readouterr()
                out, err = out + captured.out, err + captured.err
        finally:
            first.send_signal(signal.SIGCONT)  # let the first run end, and the second go on
        second.join(timeout=60)
        captured = capsys.readouterr()
        out, err = out + captured.out, err + captured.err
        assert first.wait(timeout=60) == 0
        stats = sb.stats()
    holder_text = f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
    assert err == f"uploader: waiting for the other run on this state file to end ({holder_text})\n"
    assert codes == [0]
    assert f"Skipped {path}: already uploaded ({ROWS} events)" in out
    assert "Delivered: 0 events in 0 requests" in out
    assert stats["requests"] == json.loads(report.read_text())["requests"]
    assert stats["events"] == stats["unique_event_ids"] == ROWS


def test_a_stop_while_waiting_ends_the_wait_as_busy(tmp_path):
    state = str(tmp_path / "state.db")
    stop = threading.Event()
    told: list[str] = []

    def on_wait(holder: str) -> None:
        told.append(holder)
        stop.set()  # a first Ctrl-C while waiting

    with RunLease(state):
        holder = holder_of(Path(state))
        waiting = RunLease(state, wait=True, on_wait=on_wait, stop=stop)
        with pytest.raises(CheckpointError) as caught, waiting:
            pass
    assert caught.value.kind == "busy"
    assert str(caught.value) == refused(Path(state), holder, stopped=True)
    assert told == [f"pid {os.getpid()} on {HOST}, started {holder['started']}"]
    with RunLease(state):  # released by its holder: taken at once
        assert holder_of(Path(state))["pid"] == os.getpid()


def test_the_core_tells_the_shell_it_waits_and_a_stop_ends_the_wait(write_csv, tmp_path):
    path = write_csv(export(20))
    state = tmp_path / "state.db"
    stop = threading.Event()
    events: list[Any] = []

    def observe(event: Any) -> None:
        if isinstance(event, WaitingForLease):
            events.append(event)
            stop.set()  # as the notebook or CLI shell does at a first Ctrl-C

    with Sandbox() as sb:
        config = build_config([path], command="upload", sandbox=sb, state=state, wait=True)
        with RunLease(str(state)):
            holder = holder_of(state)
            with pytest.raises(CheckpointError) as caught:
                asyncio.run(core.upload_async(config, observe, stop=stop))
        assert sb.stats()["requests"] == 0
    assert str(caught.value) == refused(state, holder, stopped=True)
    assert events == [WaitingForLease(f"pid {os.getpid()} on {HOST}, started {holder['started']}")]
    assert not state.exists()  # the state file was never opened


def test_a_state_file_whose_folder_cannot_be_made_is_refused_in_words(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    state = blocker / "state.db"
    refused = pytest.raises(CheckpointError, match=r"cannot create its folder .*a-file \(File")
    with refused, RunLease(str(state)):
        pass
    sample = Path(__file__).resolve().parents[1] / "sample_data" / "interactions.csv"
    code = main(["upload", str(sample), "--sandbox", "--state", str(state), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"state file {state}: cannot create its folder {blocker}" in err
