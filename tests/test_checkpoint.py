from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from uploader.checkpoint import SCHEMA_VERSION, Checkpoint
from uploader.cli import main
from uploader.errors import CheckpointError
from uploader.inputs import fingerprint
from uploader.read import resolve_sources
from uploader.rowsets import RowSet, decode_runs, encode_runs
from uploader.sandbox import Sandbox


@given(st.sets(st.integers(1, 5_000), max_size=300), st.lists(st.integers(0, 5_100), max_size=50))
def test_runs_round_trip_and_membership(rows, probes):
    runs = decode_runs(encode_runs(sorted(rows)))
    expanded = {r for start, end in runs.tolist() for r in range(start, end + 1)}
    assert expanded == rows
    assert all(a[1] + 1 < b[0] for a, b in zip(runs.tolist(), runs.tolist()[1:], strict=False))
    row_set = RowSet([runs])
    assert len(row_set) == len(rows)
    got = row_set.contains(np.asarray(probes, dtype=np.int64)).tolist()
    assert got == [p in rows for p in probes]


def test_acks_survive_reopening_and_leftovers_are_reported_once(tmp_path, write_csv):
    (source,) = resolve_sources([write_csv("a\n1\n")])
    path = str(tmp_path / "state.db")
    cp = Checkpoint(path)
    run = cp.start_run("target")
    file_id = cp.add_file("o/p/1", source, fingerprint(source), run)
    first = cp.mark_inflight(run, {file_id: [1, 2, 3]})
    cp.ack({file_id: [1, 2, 3]})
    cp.settle(first)
    cp.mark_inflight(run, {file_id: [4, 5]})  # the process "dies" here
    cp.close()
    cp = Checkpoint(path)
    done, refused = cp.done_rows(file_id)
    assert len(done) == 3 and refused == {}
    assert cp.take_leftover_inflight() == {file_id: [4, 5]}
    assert cp.take_leftover_inflight() == {}
    cp.close()


def test_a_new_state_file_and_the_files_sqlite_keeps_beside_it_are_the_owners_only(
    tmp_path, umask_022
):
    checkpoint = Checkpoint(str(tmp_path / "state.db"))
    try:
        checkpoint.start_run("target")  # written: the write-ahead log holds it
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    finally:
        checkpoint.close()
    assert modes == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}


def test_a_file_that_is_not_a_state_file_is_refused(tmp_path):
    bogus = tmp_path / "state.db"
    bogus.write_text("not sqlite at all, " * 100)
    with pytest.raises(CheckpointError, match=r"is damaged \(file is not a database\)"):
        Checkpoint(str(bogus))


def test_status_lists_runs_and_files(tmp_path, write_csv, capsys):
    path = write_csv("ts,event,sku,user_id\n2024-05-02T14:38:24Z,view,S1,u1\n")
    state = tmp_path / "s.db"
    assert main(["upload", str(path), "--sandbox", "--quiet", "--state", str(state)]) == 0
    capsys.readouterr()
    assert main(["status", "--state", str(state)]) == 0
    out = capsys.readouterr().out
    assert "completed" in out
    target = "sandbox-org/sandbox-project/7340000000000000001"
    assert f"complete {path} -> {target}: 1 rows read, 1 delivered, 0 rejected" in out


def test_status_without_a_state_file_says_so(tmp_path, capsys):
    assert main(["status", "--state", str(tmp_path / "none.db")]) == 2
    assert "no state file at" in capsys.readouterr().err


# --- state files this version cannot use, through `uploader upload` ---------------------------

CSV = "ts,event,sku,user_id\n" + "".join(
    f"2024-05-02T14:38:{s:02d}Z,view,S{s},u{s % 3}\n" for s in range(40)
)


def make_state(path: Path, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real state file: the record of an upload of `path` to a sandbox."""
    assert main(["upload", str(path), "--sandbox", "--quiet", "--state", str(state)]) == 0
    capsys.readouterr()


def upload_to(sb: Sandbox, path: Path, state: Path, capsys, monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setenv("INTEMPT_API_KEY", sb.api_key)
    code = main(
        [
            "upload", str(path), "--base-url", sb.base_url, "--org", sb.org, "--project",
            sb.project, "--source", sb.source, "--state", str(state), "--quiet",
        ]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.mark.parametrize(
    ("schema", "layout", "message"),
    [
        (
            99,
            "ALTER TABLE api_rejects RENAME TO refusals",  # a newer version renamed a table
            "was written by a newer version of uploader (state schema 99; this one reads "
            f"{SCHEMA_VERSION}); nothing was sent. Upgrade uploader, or give --state FILE for a "
            "new state file (which would send again what this one records as delivered)",
        ),
        (
            0,
            "DROP TABLE api_rejects",  # an older version had no such table yet
            "was written by an older version of uploader (state schema 0; this one reads "
            f"{SCHEMA_VERSION}); nothing was sent. Finish its uploads with that version, or "
            "give --state FILE for a new state file",
        ),
    ],
    ids=["newer", "older"],
)
def test_a_state_file_of_another_version_is_refused_and_left_as_it_was(
    write_csv, tmp_path, capsys, monkeypatch, schema, layout, message
):
    path, state = write_csv(CSV), tmp_path / "state.db"
    make_state(path, state, capsys)
    db = sqlite3.connect(state)
    db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(schema),))
    db.execute(layout)
    db.commit()
    db.close()
    before = state.read_bytes()
    with Sandbox() as sb:
        code, out, err = upload_to(sb, path, state, capsys, monkeypatch)
        assert sb.stats()["requests"] == 0
    assert code == 2
    assert out == ""
    assert err == f"uploader: error: state file {state} {message}\n"
    assert state.read_bytes() == before  # not one table added to the other version's file


def _cut_in_half(state: Path) -> None:
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])


def _garbage(state: Path) -> None:
    state.write_bytes(bytes(range(256)) * 32)


@pytest.mark.parametrize(
    ("spoil", "detail"),
    [(_cut_in_half, "database disk image is malformed"), (_garbage, "file is not a database")],
    ids=["truncated", "garbage"],
)
def test_a_damaged_state_file_is_refused_and_left_as_it_was(
    write_csv, tmp_path, capsys, monkeypatch, spoil, detail
):
    path, state = write_csv(CSV), tmp_path / "state.db"
    make_state(path, state, capsys)
    spoil(state)
    before = state.read_bytes()
    with Sandbox() as sb:
        code, out, err = upload_to(sb, path, state, capsys, monkeypatch)
        assert sb.stats()["requests"] == 0
    assert code == 2
    assert out == ""
    assert err == (
        f"uploader: error: state file {state} is damaged ({detail}); nothing was sent. Keep it "
        "(it records what was delivered) and restore it from a backup, or give --state FILE "
        "for a new state file, knowing that a new one sends again what this one records as "
        "delivered\n"
    )
    assert state.read_bytes() == before


def test_a_state_file_on_a_disk_that_turned_read_only_is_refused(
    write_csv, tmp_path, tmpfs, capsys, monkeypatch
):
    disk = tmpfs("1m")
    path, state = write_csv(CSV), disk.path / "state.db"
    make_state(path, state, capsys)
    before = state.read_bytes()
    disk.remount("ro")
    with Sandbox() as sb:
        code, out, err = upload_to(sb, path, state, capsys, monkeypatch)
        assert sb.stats()["requests"] == 0
    assert code == 2
    assert out == ""
    assert err == (
        f"uploader: error: state file {state}: cannot create its lock {state}.lock (Read-only "
        "file system); check the disk and its permissions, or give --state FILE on a writable "
        "disk\n"
    )
    assert state.read_bytes() == before


def test_every_file_a_run_writes_is_the_owners_only(write_csv, tmp_path, capsys, umask_022):
    path = write_csv(CSV + "2024-05-02T14:39:00Z,view,,u1\n")  # one reject
    state = tmp_path / "new" / "state.db"
    rejects, report = tmp_path / "rej.csv", tmp_path / "r.json"
    code = main(
        [
            "upload", str(path), "--sandbox", "--quiet", "--state", str(state),
            "--rejects", str(rejects), "--report", str(report),
        ]
    )  # fmt: skip
    assert code == 1, capsys.readouterr().err
    dry = tmp_path / "dry"
    assert main(["upload", str(path), "--dry-run", "--out", str(dry)]) == 1
    written = [state, Path(f"{state}.lock"), rejects, report, *sorted(dry.iterdir())]
    assert [p.name for p in written[4:]] == ["rejects.csv", "report.json", "requests.jsonl"]
    assert {str(p): stat.S_IMODE(p.stat().st_mode) for p in written} == {
        str(p): 0o600 for p in written
    }
