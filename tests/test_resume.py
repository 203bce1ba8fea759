"""The resume plan: decide() is the policy table, FileResume and ResumePlan what the reader
is handed. Pure values: no state file here (test_ledger.py has it)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.factories import events_of, item
from uploader.checkpoint import FileRecord
from uploader.errors import CheckpointError
from uploader.events import Events
from uploader.inputs import Source
from uploader.resume import Decision, FileResume, ResumePlan, decide
from uploader.rowsets import RowSet, decode_runs, encode_runs


def record(file_id: int, status: str, delivered: int, path: str = "in.csv") -> FileRecord:
    fingerprint = f"sha256:{file_id}"
    return FileRecord(
        file_id, "o/p/1", path, 100, fingerprint, status, delivered, delivered, 0, 0.0
    )


def rows(*numbers: int) -> RowSet:
    return RowSet([decode_runs(encode_runs(numbers))])


def events(*numbers: int, file: str = "in.csv") -> Events:
    return events_of([item(n, row=n) for n in numbers], file=file)


COMPLETE = record(1, "complete", 1_234)
PARTIAL = record(2, "partial", 40)
CHANGED = record(3, "partial", 2_500)  # the same name, other content, some delivered
CHANGED_UNSENT = record(4, "partial", 0)  # the same name, other content, nothing delivered


# --- decide: the policy table --------------------------------------------------------------
# same: this content seen before; other: this name seen before with other content.


@pytest.mark.parametrize(
    ("same", "other", "force", "restart", "expected"),
    [
        # never seen: a new input
        (None, None, False, False, Decision("new")),
        # delivered whole before: skipped, unless forced
        (COMPLETE, None, False, False, Decision("skip", why="already uploaded (1,234 events)")),
        (COMPLETE, None, False, True, Decision("skip", why="already uploaded (1,234 events)")),
        (COMPLETE, None, True, False, Decision("new", forget=(1,))),
        # delivered in part: resumed, unless forced (then sent again from its first row)
        (PARTIAL, None, False, False, Decision("resume", PARTIAL)),
        (PARTIAL, None, False, True, Decision("resume", PARTIAL)),
        (PARTIAL, None, True, False, Decision("new", forget=(2,))),
        # content seen, and its name held other content since: the content's record rules
        (PARTIAL, CHANGED, False, False, Decision("resume", PARTIAL)),
        (COMPLETE, CHANGED, True, False, Decision("new", forget=(1, 3))),
        # changed since some of it was delivered: only --restart or --force start it over
        (None, CHANGED, False, True, Decision("new", forget=(3,))),
        (None, CHANGED, True, False, Decision("new", forget=(3,))),
        # changed before anything was delivered: nothing to protect
        (None, CHANGED_UNSENT, False, False, Decision("new")),
    ],
)
def test_decide(same, other, force, restart, expected):
    assert decide("in.csv", same, other, force=force, restart=restart) == expected


@pytest.mark.parametrize("status", ["partial", "complete"])
def test_a_changed_file_is_refused_with_what_to_do(status):
    other = record(3, status, 2_500)
    message = (
        f"in.csv changed since 2,500 of its events were delivered ({status}); nothing was "
        "sent. Give --restart to send this file again from its first row, or --force to send "
        "it again whatever was delivered before (both can send events twice)"
    )
    with pytest.raises(CheckpointError, match=f"^{re.escape(message)}$"):
        decide("in.csv", None, other, force=False, restart=False)


# --- FileResume ----------------------------------------------------------------------------


def test_a_new_file_is_fresh_and_splits_nothing_off():
    resume = FileResume(7)
    assert resume.fresh
    batch = events(1, 2, 3)
    assert resume.split(batch) == (batch, 0, 0)
    assert resume.handled(np.array([1, 2], dtype=np.int64)).tolist() == [False, False]


def test_a_file_with_only_refused_rows_is_not_fresh():
    assert not FileResume(7, refused={4: "bad"}).fresh
    assert not FileResume(7, done=rows(1)).fresh


def test_handled_rows_are_the_done_and_the_refused():
    resume = FileResume(7, done=rows(2, 3, 4, 9), refused={6: "refused by the API"})
    probe = np.arange(1, 11, dtype=np.int64)
    handled = resume.handled(probe)
    assert probe[handled].tolist() == [2, 3, 4, 6, 9]


def test_split_keeps_the_rows_still_to_send_and_counts_the_rest():
    resume = FileResume(7, done=rows(2, 3), refused={5: "refused by the API"})
    fresh, delivered, refused = resume.split(events(1, 2, 3, 4, 5, 6))
    assert fresh.rows.tolist() == [1, 4, 6]
    assert (delivered, refused) == (2, 1)


def test_split_of_no_events():
    nothing = Events.empty("in.csv")
    assert FileResume(7, done=rows(1)).split(nothing) == (nothing, 0, 0)


# --- ResumePlan ----------------------------------------------------------------------------


def source(name: str) -> Source:
    return Source(name, "csv", ("a",))


def test_done_rows_is_none_for_a_fresh_input_and_the_resumes_test_otherwise():
    fresh, resumed = source("new.csv"), source("old.csv")
    plan = ResumePlan(
        (fresh, resumed),
        {"new.csv": FileResume(1), "old.csv": FileResume(2, done=rows(1, 2))},
    )
    assert plan.done_rows(fresh) is None
    done = plan.done_rows(resumed)
    assert done is not None
    assert done(np.array([1, 2, 3], dtype=np.int64)).tolist() == [True, True, False]


def test_delivered_keys_join_the_keys_of_the_inputs_in_the_order_given():
    a, b, c = source("a.csv"), source("b.csv"), source("c.csv")
    plan = ResumePlan(
        (a, b, c),
        {
            "a.csv": FileResume(1, keys=b"AAAAAAAA"),
            "b.csv": FileResume(2),
            "c.csv": FileResume(3, keys=b"CCCCCCCC"),
        },
    )
    assert plan.delivered_keys([c, a]) == b"CCCCCCCCAAAAAAAA"
    assert plan.delivered_keys([b]) == b""
    assert plan.skipped == () and plan.possibly_resent == 0
