"""The upload against the sandbox over real HTTP: faults, resume, kill -9, auth, changes."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from uploader import core
from uploader.cli import main
from uploader.config import build_config
from uploader.errors import CheckpointError
from uploader.pacing import AUTO_START
from uploader.progress import Progress
from uploader.results import UploadResult
from uploader.sandbox import Sandbox
from uploader.transport import Http11Transport

ROOT = Path(__file__).resolve().parents[1]
HEADER = "ts,event,sku,user_id,qty\n"
EVENTS = ["view", "cart", "remove_from_cart", "purchase"]


def export(rows: int, bad_every: int = 0, seed: int = 1) -> str:
    rng = random.Random(seed)
    lines = []
    for i in range(rows):
        sku = "" if bad_every and i % bad_every == bad_every - 1 else f"SKU-{i}"
        second = 1_700_000_000 + i
        lines.append(
            f"{second},{rng.choice(EVENTS)},{sku},u{rng.randrange(50)},{rng.randint(1, 3)}"
        )
    return HEADER + "\n".join(lines) + "\n"


async def no_wait(_: float) -> None:
    await asyncio.sleep(0)


def upload(
    paths: list[Any],
    sb: Sandbox,
    state: Path,
    *,
    batch_size: int = 50,
    sleep: Any = no_wait,
    stop_when: Any = None,
    mapping: Any = ("data.quantity=qty",),
    **options: Any,
) -> UploadResult:
    """Upload to the sandbox through the core, as both shells do; `stop_when(progress)`
    returning True asks the run to stop, as a first Ctrl-C does."""
    config = build_config(
        paths,
        command="upload",
        sandbox=sb,
        state=state,
        batch_size=batch_size,
        mapping=list(mapping),
        **options,
    )
    stop = threading.Event()

    def observe(event: Any) -> None:
        if stop_when is not None and isinstance(event, Progress) and stop_when(event):
            stop.set()

    return asyncio.run(core.upload_async(config, observe, sleep=sleep, stop=stop))


def stored_ids(sb: Sandbox) -> list[str]:
    ids: list[str] = []
    after = 0
    while True:
        page = sb.events(limit=1000, after=after)
        if not page:
            return ids
        ids.extend(e["item"]["eventId"] for e in page)
        after = page[-1]["id"]


def test_clean_upload_stores_every_valid_row_once(write_csv, tmp_path):
    path = write_csv(export(600, bad_every=100))
    with Sandbox() as sb:
        outcome = upload([path], sb, tmp_path / "state.db")
        stats = sb.stats()
    assert outcome.status == "completed"
    assert outcome.events_sent == 594
    assert outcome.events_rejected == 6
    assert stats["events"] == stats["unique_event_ids"] == 594
    assert stats["key_in_query"] == 0


@pytest.mark.parametrize(
    "faults",
    [
        {"error_rate": 0.3},
        {"rate_limit": 40.0},
        {"drop_rate": 0.2},
        {"max_body_bytes": 3_000},
        {"transient_400_rate": 0.3},
        {"latency_ms": 30, "error_rate": 0.1, "drop_rate": 0.1},
    ],
    ids=lambda f: ",".join(f),
)
def test_every_fault_mix_ends_with_every_valid_row_stored(write_csv, tmp_path, faults):
    path = write_csv(export(400, bad_every=50))
    with Sandbox(seed=7, **faults) as sb:
        outcome = upload([path], sb, tmp_path / "state.db", concurrency=4)
        stats = sb.stats()
    assert outcome.status == "completed", outcome.message
    valid = 400 - 8
    assert outcome.events_sent == valid
    assert stats["unique_event_ids"] == valid
    # Only requests whose answer was lost (dropped connections) can store twice.
    assert stats["duplicate_events"] <= stats.get("dropped", 0) * 50


def test_a_rerun_sends_nothing_and_says_the_file_was_uploaded(write_csv, tmp_path):
    path = write_csv(export(120))
    with Sandbox() as sb:
        first = upload([path], sb, tmp_path / "state.db")
        second = upload([path], sb, tmp_path / "state.db")
        stats = sb.stats()
    assert first.events_sent == 120
    assert second.events_sent == 0
    assert second.skipped_files == ((str(path), "already uploaded (120 events)"),)
    assert stats["events"] == 120


def test_force_sends_a_completed_file_again(write_csv, tmp_path):
    path = write_csv(export(30))
    with Sandbox() as sb:
        upload([path], sb, tmp_path / "state.db")
        again = upload([path], sb, tmp_path / "state.db", force=True)
        assert sb.stats()["events"] == 60
    assert again.events_sent == 30


def test_a_changed_file_is_not_resumed_silently(write_csv, tmp_path):
    path = write_csv(export(300))
    state = tmp_path / "state.db"
    with Sandbox() as sb:
        assert upload([path], sb, state).events_sent == 300
        path.write_text(export(301))
        with pytest.raises(CheckpointError) as info:
            upload([path], sb, state)
        assert "changed since 300 of its events were delivered" in str(info.value)
        assert "--restart" in str(info.value) and "--force" in str(info.value)
        assert sb.stats()["events"] == 300  # nothing was sent
        restarted = upload([path], sb, state, restart=True)
        assert restarted.events_sent == 301


def test_retries_exhausted_abort_and_a_rerun_resumes(write_csv, tmp_path):
    path = write_csv(export(200))
    state = tmp_path / "state.db"
    with Sandbox(error_rate=1.0, seed=1) as failing:
        outcome = upload([path], failing, state, max_retry_time=0.05)
    assert outcome.status == "aborted"
    assert "retries" in (outcome.message or "")
    with Sandbox() as sb:
        again = upload([path], sb, state)
        assert sb.stats()["unique_event_ids"] == 200
    assert again.status == "completed"
    assert again.events_sent == 200


def test_resume_after_abort_sends_only_what_is_left(write_csv, tmp_path):
    path = write_csv(export(500))
    state = tmp_path / "state.db"
    with Sandbox(latency_ms=50) as sb:
        # Stop the run after a few batches, as a first Ctrl-C does.
        first = upload([path], sb, state, concurrency=1, stop_when=lambda p: p.events_sent >= 150)
        assert first.status == "interrupted"
        sent_first = first.events_sent
        assert 150 <= sent_first < 500
        second = upload([path], sb, state)
        stats = sb.stats()
    assert second.status == "completed"
    assert second.events_skipped_already_sent == sent_first
    assert second.events_sent == 500 - sent_first
    assert stats["events"] == stats["unique_event_ids"] == 500


def _cli_args(sb: Sandbox, path: Path, state: Path) -> list[str]:
    return [
        "upload", str(path), "--map", "data.quantity=qty", "--base-url", sb.base_url,
        "--org", sb.org, "--project", sb.project, "--source", sb.source, "--state", str(state),
        "--quiet",
    ]  # fmt: skip


def test_auth_failure_exits_3_after_one_request(write_csv, tmp_path, capsys, monkeypatch):
    path = write_csv(export(200))
    monkeypatch.setenv("INTEMPT_API_KEY", "wrong.not-the-secret")
    with Sandbox() as sb:
        started = time.monotonic()
        code = main(_cli_args(sb, path, tmp_path / "state.db"))
        elapsed = time.monotonic() - started
        stats = sb.stats()
    out, err = capsys.readouterr()
    assert code == 3
    assert stats["status_counts"] == {"401": 1}
    assert "the API key is wrong" in err
    assert "not-the-secret" not in out + err
    assert elapsed < 30  # no backoff loop on a 401 (a generous bound, not a benchmark)


def test_missing_settings_name_each_one(write_csv, capsys, monkeypatch):
    for name in ("INTEMPT_API_KEY", "INTEMPT_ORG", "INTEMPT_PROJECT", "INTEMPT_SOURCE_ID"):
        monkeypatch.delenv(name, raising=False)
    code = main(["upload", str(write_csv(export(3))), "--org", "acme"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "missing project (give --project NAME or INTEMPT_PROJECT)" in err
    assert "source id (give --source ID or INTEMPT_SOURCE_ID)" in err
    assert "API key (give INTEMPT_API_KEY or --api-key-file FILE)" in err
    assert "org" not in err.split("missing")[1].split(";")[0]


def test_the_key_never_leaves_the_process(write_csv, tmp_path, capsys):
    secret_key = "leakcheck.s3cr3t-value-123"
    key_file = tmp_path / "key.txt"
    key_file.write_text(secret_key + "\n")
    path = write_csv(export(100, bad_every=10))
    report, rejects, state = tmp_path / "r.json", tmp_path / "rej.csv", tmp_path / "s.db"
    with Sandbox(api_key=secret_key, error_rate=0.2, seed=3) as sb:
        args = _cli_args(sb, path, state)
        args += [
            "--api-key-file",
            str(key_file),
            "--report",
            str(report),
            "--rejects",
            str(rejects),
        ]
        code = main(args)
    out, err = capsys.readouterr()
    assert code == 1
    with Sandbox() as other:  # wrong key: the refusal's text must not carry it either
        code = main([*_cli_args(other, path, tmp_path / "s2.db"), "--api-key-file", str(key_file)])
    out2, err2 = capsys.readouterr()
    assert code == 3
    texts = [out, err, out2, err2, report.read_text(), rejects.read_text()]
    for db in (state, tmp_path / "s2.db"):
        texts.append(Path(db).read_bytes().decode("latin-1"))
        texts.extend(str(row) for row in sqlite3.connect(db).execute("SELECT * FROM runs"))
    for text in texts:
        assert "s3cr3t-value-123" not in text
        assert "bGVha2NoZWNr" not in text  # base64 of the prefix:secret pair's start


def _spawn(sb: Sandbox, path: Path, state: Path, batch: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, INTEMPT_API_KEY=sb.api_key)
    args = [*_cli_args(sb, path, state), "--batch-size", str(batch), "--concurrency", "3"]
    return subprocess.Popen(
        [sys.executable, "-m", "uploader", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("seed", range(4))
def test_kill_9_at_any_moment_loses_nothing_and_resends_only_what_was_in_flight(
    write_csv, tmp_path, seed
):
    rng = random.Random(seed)
    rows = 1_500
    path = write_csv(export(rows, seed=seed))
    state = tmp_path / "state.db"
    with Sandbox(latency_ms=15) as sb:
        for _ in range(2):
            # Kill once the API has stored a random share of the rows: mid-run for sure.
            threshold = sb.stats()["unique_event_ids"] + rng.randint(50, 500)
            proc = _spawn(sb, path, state, batch=25)
            while sb.stats()["events"] < threshold and proc.poll() is None:
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert sb.stats()["unique_event_ids"] < rows
        env = dict(os.environ, INTEMPT_API_KEY=sb.api_key)
        done = subprocess.run(
            [sys.executable, "-m", "uploader", *_cli_args(sb, path, state)],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        stats = sb.stats()
    assert stats["unique_event_ids"] == rows  # nothing lost
    db = sqlite3.connect(state)
    resent = db.execute("SELECT SUM(possibly_resent) FROM runs").fetchone()[0]
    status, delivered = db.execute("SELECT status, delivered FROM files").fetchone()
    db.close()
    assert (status, delivered) == ("complete", rows)
    # Every duplicate the API stored was in flight when a process died, and was counted.
    assert stats["duplicate_events"] <= resent
    assert resent <= 2 * (3 * 25 + 4)  # at most what can be in flight at two kills


def test_sigint_stops_after_in_flight_and_exits_130(write_csv, tmp_path):
    path = write_csv(export(3_000))
    state = tmp_path / "state.db"
    with Sandbox(latency_ms=20) as sb:
        proc = _spawn(sb, path, state, batch=20)
        while sb.stats()["events"] < 200 and proc.poll() is None:
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        stats = sb.stats()
        db = sqlite3.connect(state)
        inflight = db.execute("SELECT COUNT(*) FROM inflight").fetchone()[0]
        delivered = db.execute("SELECT COALESCE(SUM(n), 0) FROM acks").fetchone()[0]
        db.close()
    assert inflight == 0  # in-flight requests finished before exiting
    assert delivered == stats["events"] == stats["unique_event_ids"]
    assert 0 < delivered < 3_000


def test_files_are_tracked_per_target(write_csv, tmp_path):
    path = write_csv(export(40))
    state = tmp_path / "state.db"
    with Sandbox() as rehearsal:
        upload([path], rehearsal, state)
    with Sandbox(org="acme", project="shop", source="1234567890123456789") as production:
        real = upload([path], production, state)
        assert production.stats()["events"] == 40
    assert real.events_sent == 40  # the rehearsal does not count as delivered


def test_the_first_event_of_each_name_goes_alone_before_the_fan_out(write_csv, tmp_path):
    path = write_csv(export(400))
    with Sandbox() as sb:
        upload([path], sb, tmp_path / "state.db", concurrency=4)
        events = sb.events(limit=1000)
    by_request: dict[int, list[str]] = {}
    for e in events:
        by_request.setdefault(e["request_id"], []).append(e["name"])
    first_request_of = {}
    for request_id in sorted(by_request):
        for name in by_request[request_id]:
            first_request_of.setdefault(name, request_id)
    assert len(first_request_of) == 4
    for name, request_id in first_request_of.items():
        assert by_request[request_id] == [name]  # alone in its request
    # and nothing of that name was stored before it
    assert all(
        min(r for r in by_request if n in by_request[r]) == r for n, r in first_request_of.items()
    )


def test_resuming_parquet_skips_finished_row_groups(write_parquet, tmp_path):
    n = 2_000
    table = pa.table(
        {
            "ts": pa.array(
                [1_700_000_000_000 + (i % 1500) * 1000 for i in range(n)], pa.timestamp("ms", "UTC")
            ),
            "event": ["view"] * n,
            "sku": [f"S{i % 1500}" for i in range(n)],  # rows 1500.. repeat rows 0..499 exactly
            "user_id": ["u1"] * n,
        }
    )
    path = write_parquet(table, row_group_size=100)
    state = tmp_path / "state.db"
    with Sandbox(latency_ms=20) as sb:
        first = upload(
            [path], sb, state, concurrency=1, mapping=(), stop_when=lambda p: p.events_sent >= 600
        )
        assert first.status == "interrupted"
        second = upload([path], sb, state, concurrency=1, mapping=())
        stats = sb.stats()
    assert second.status == "completed"
    assert second.rows_skipped_done_before >= 500  # whole groups, not re-derived
    assert second.rows_skipped_done_before % 100 == 0
    assert stats["unique_event_ids"] == 1_500
    assert stats["duplicate_events"] == 0  # repeats of skipped rows were not sent again


# --- requests in flight ----------------------------------------------------------------------


class InFlight(httpx.AsyncBaseTransport):
    """The real wire, counting the requests it carries at once (answer read included)."""

    def __init__(self) -> None:
        # More connections than any limit under test: the limiter, not the pool, must bound.
        self.wire = Http11Transport(max_connections=16)
        self.now = self.most = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await self.wire.handle_async_request(request)
        finally:
            self.now -= 1

    async def aclose(self) -> None:
        await self.wire.aclose()


def upload_through(transport, paths, sb, state, **options):
    config = build_config(
        paths, command="upload", sandbox=sb, state=state, batch_size=50, **options
    )
    return asyncio.run(core.upload_async(config, transport=transport, sleep=no_wait))


def test_by_default_the_requests_in_flight_grow_past_the_start(write_csv, tmp_path):
    path = write_csv(export(6_000))
    transport = InFlight()
    with Sandbox(latency_ms=50) as sb:
        outcome = upload_through(transport, [path], sb, tmp_path / "state.db")
        stats = sb.stats()
    assert outcome.status == "completed", outcome.message
    assert stats["unique_event_ids"] == outcome.events_sent == 6_000
    assert outcome.concurrency["mode"] == "adaptive"
    assert outcome.concurrency["highest"] > AUTO_START
    assert transport.most > AUTO_START  # and the requests did go out side by side


def test_pinned_concurrency_is_never_exceeded(write_csv, tmp_path):
    path = write_csv(export(1_000))
    transport = InFlight()
    with Sandbox(latency_ms=20) as sb:
        outcome = upload_through(transport, [path], sb, tmp_path / "state.db", concurrency=2)
    assert outcome.status == "completed", outcome.message
    assert outcome.concurrency == {"mode": "pinned", "settled": 2, "highest": 2}
    assert transport.most == 2


# --- a full disk ---------------------------------------------------------------------------------

# SQLite appends the pages each transaction changes to the write-ahead log, 4 KiB and a
# 24-byte header each, and folds the log back only at 1,000 pages: creating a state file and
# planning the run write about 40 pages (measured), each request about 4 more (marked in
# flight, acknowledged, settled). Room for 40 + 4 x 20 pages fills after about twenty
# requests of the hundred below, which need some 1.8 MiB: far from both ends.
WAL_PAGE = 4096 + 24
ROOM = (40 + 4 * 20) * WAL_PAGE


def test_a_disk_that_fills_mid_run_aborts_resumably_and_the_same_command_completes(
    write_csv, tmp_path, tmpfs, capsys, monkeypatch
):
    rows = 2_000
    path = write_csv(export(rows))
    disk = tmpfs("4m")
    ballast = disk.path / "ballast"
    ballast.write_bytes(b"\0" * (disk.free() - ROOM))
    state = disk.path / "state.db"
    with Sandbox() as sb:
        monkeypatch.setenv("INTEMPT_API_KEY", sb.api_key)
        args = [*_cli_args(sb, path, state), "--batch-size", "20"]
        code = main(args)
        out, err = capsys.readouterr()
        db = sqlite3.connect(f"file:{state}?mode=ro", uri=True)  # as the failed run left it
        (verdict,) = db.execute("PRAGMA quick_check").fetchone()
        recorded = db.execute("SELECT COALESCE(SUM(n), 0) FROM acks WHERE kind='sent'").fetchone()
        db.close()
        ballast.unlink()  # room again
        again = main(args)
        capsys.readouterr()
        stats = sb.stats()
    assert code == 3
    assert err == (
        f"uploader: aborted: the disk holding the state file {state} is full (database or disk "
        "is full); what was delivered until now is recorded. Free some space and run the same "
        "command to resume\nDelivered rows are recorded; run the same command to resume.\n"
    )
    assert "Traceback" not in out
    assert verdict == "ok"
    assert 0 < recorded[0] < rows  # it filled up mid-run, after some requests
    assert again == 0
    assert stats["unique_event_ids"] == rows
    db = sqlite3.connect(state)
    resent = db.execute("SELECT SUM(possibly_resent) FROM runs").fetchone()[0]
    db.close()
    # Only the requests in flight when the disk filled were sent twice, and were counted.
    assert stats["duplicate_events"] <= resent


@pytest.mark.parametrize("option", ["--rejects", "--report"])
def test_a_file_the_full_disk_cannot_take_at_the_end_of_a_run_makes_it_aborted_not_an_error(
    write_csv, tmp_path, tmpfs, capsys, monkeypatch, option
):
    disk = tmpfs("64k")
    (disk.path / "ballast").write_bytes(b"\0" * disk.free())
    written = disk.path / "out"
    path = write_csv(export(200, bad_every=10))  # 20 rejects: written out when the run ends
    with Sandbox() as sb:
        monkeypatch.setenv("INTEMPT_API_KEY", sb.api_key)
        code = main([*_cli_args(sb, path, tmp_path / "state.db"), option, str(written)])
        out, err = capsys.readouterr()
        stats = sb.stats()
    assert stats["unique_event_ids"] == 180
    assert code == 3  # not 2, which says that nothing was sent
    assert "Delivered: 180 events" in out
    assert err == (
        f"uploader: aborted: cannot write {written} (No space left on device); free some space "
        "or choose another path\nDelivered rows are recorded; run the same command to resume.\n"
    )
