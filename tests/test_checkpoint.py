from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from uploader.checkpoint import Checkpoint, RowSet, decode_runs, encode_runs
from uploader.cli import main
from uploader.errors import CheckpointError
from uploader.inputs import fingerprint
from uploader.read import resolve_sources


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
