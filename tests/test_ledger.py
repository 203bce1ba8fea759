"""StateLedger on a real state file: what the run loop tells it, and what the next run
plans from it. The run loop is played by hand, one message at a time."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import orjson
import pytest

from tests.factories import events_of, item
from uploader.batches import Batch, encode_body
from uploader.errors import CheckpointError, InputError
from uploader.events import KEY_DTYPE, Events
from uploader.inputs import Source, fingerprint
from uploader.ledger import StateLedger
from uploader.target import Target

TARGET = Target("http://127.0.0.1:9", "acme", "shop", "7301234567890123456")
TARGET_KEY = "acme/shop/7301234567890123456"
HEADER = "ts,event,sku,user_id\n"


def export(rows: int, sku: str = "S") -> str:
    lines = [f"2024-05-02T14:38:{i:02},view,{sku}{i},u{i}" for i in range(1, rows + 1)]
    return HEADER + "\n".join(lines) + "\n"


def events(source: Source, *rows: int) -> Events:
    """Events of `source` at these rows, each with a distinct 10-byte content key."""
    block = events_of([item(row, row=row) for row in rows], file=source.name)
    keys = np.array([f"key-{row:06}".encode() for row in rows], dtype=KEY_DTYPE)
    return replace(block, keys=keys)


def batch(seq: int, evs: Events) -> Batch:
    return Batch(seq, evs, encode_body(evs))


def test_plan_records_every_new_input_as_partial_and_reads_it(open_checkpoint, csv_sources):
    a, b = csv_sources(**{"a.csv": export(3), "b.csv": export(2)})
    checkpoint = open_checkpoint()
    ledger = StateLedger(checkpoint, TARGET)
    plan = ledger.plan([a, b], force=False, restart=False)
    assert plan.to_read == (a, b)
    assert plan.skipped == () and plan.possibly_resent == 0
    assert all(plan.files[s.name].fresh for s in (a, b))
    records = checkpoint.files()
    assert [(r.path, r.status, r.target, r.size) for r in records] == [
        (a.name, "partial", TARGET_KEY, a.size),
        (b.name, "partial", TARGET_KEY, b.size),
    ]
    assert [plan.files[s.name].file_id for s in (a, b)] == [r.id for r in records]
    assert ledger.unfinished()


def test_a_file_completes_only_when_read_to_its_end_and_every_queued_event_answered(
    open_checkpoint, csv_sources
):
    (a,) = csv_sources(**{"a.csv": export(4)})
    checkpoint = open_checkpoint()
    ledger = StateLedger(checkpoint, TARGET)
    plan = ledger.plan([a], force=False, restart=False)
    file_id = plan.files[a.name].file_id
    first, second = batch(0, events(a, 1, 2)), batch(1, events(a, 3))

    ledger.read(a.name, rows=4, queued=3, rejected=1)
    ledger.settled(a.name, [4])
    token = ledger.sending(first)
    ledger.delivered(first)
    ledger.answered(token, first)
    assert checkpoint.delivered_keys(file_id) == b"key-000001key-000002"

    ledger.read_all(a.name)  # read to the end, one event still queued
    assert ledger.unfinished()
    assert checkpoint.files()[0].status == "partial"

    token = ledger.sending(second)
    ledger.refused(second.events, "the API says no")
    ledger.answered(token, second)
    assert not ledger.unfinished()
    (saved,) = checkpoint.files()
    assert (saved.status, saved.rows_read, saved.delivered, saved.rejected) == (
        "complete",
        4,
        2,
        2,  # one rejected before sending, one refused by the API
    )
    assert checkpoint.delivered_keys(file_id) == b""  # a finished file keeps no keys


def test_every_answer_in_is_not_enough_without_read_all(open_checkpoint, csv_sources):
    (a,) = csv_sources(**{"a.csv": export(2)})
    ledger = StateLedger(open_checkpoint(), TARGET)
    ledger.plan([a], force=False, restart=False)
    only = batch(0, events(a, 1, 2))
    ledger.read(a.name, rows=2, queued=2, rejected=0)
    token = ledger.sending(only)
    ledger.delivered(only)
    ledger.answered(token, only)
    assert ledger.unfinished()  # more rows may follow: the reader has not said it is done
    ledger.read_all(a.name)
    assert not ledger.unfinished()


def test_a_completed_file_is_skipped_by_the_next_run(open_checkpoint, csv_sources):
    (a,) = csv_sources(**{"a.csv": export(2)})
    checkpoint = open_checkpoint()
    ledger = StateLedger(checkpoint, TARGET)
    ledger.plan([a], force=False, restart=False)
    only = batch(0, events(a, 1, 2))
    ledger.read(a.name, rows=2, queued=2, rejected=0)
    token = ledger.sending(only)
    ledger.delivered(only)
    ledger.answered(token, only)
    ledger.read_all(a.name)
    ledger.close_run("completed", {})

    again = StateLedger(open_checkpoint(), TARGET).plan([a], force=False, restart=False)
    assert again.to_read == ()
    assert again.skipped == ((a.name, "already uploaded (2 events)"),)


def test_another_target_does_not_count_a_file_as_delivered(open_checkpoint, csv_sources):
    (a,) = csv_sources(**{"a.csv": export(2)})
    checkpoint = open_checkpoint()
    ledger = StateLedger(checkpoint, TARGET)
    ledger.plan([a], force=False, restart=False)
    ledger.read_all(a.name)
    ledger.close_run("completed", {})
    assert checkpoint.files()[0].status == "complete"
    other = Target(TARGET.base_url, "acme", "staging", TARGET.source_id)
    plan = StateLedger(checkpoint, other).plan([a], force=False, restart=False)
    assert plan.to_read == (a,)


def test_a_crashed_run_is_resumed_and_its_unanswered_requests_counted(open_checkpoint, csv_sources):
    (a,) = csv_sources(**{"a.csv": export(8)})
    first_run = StateLedger(open_checkpoint(), TARGET)
    first_run.plan([a], force=False, restart=False)
    answered = batch(0, events(a, 1, 2))
    acked_only = batch(1, events(a, 3, 4))  # delivered, then the process died
    unanswered = batch(2, events(a, 5, 6))  # sent, no answer heard
    token = first_run.sending(answered)
    first_run.delivered(answered)
    first_run.answered(token, answered)
    first_run.sending(acked_only)
    first_run.delivered(acked_only)
    first_run.sending(unanswered)
    first_run.settled(a.name, [7])  # rejected before sending
    # the process dies here: no answered(), no close_run()

    checkpoint = open_checkpoint()
    second_run = StateLedger(checkpoint, TARGET)
    plan = second_run.plan([a], force=False, restart=False)
    assert plan.to_read == (a,)
    resume = plan.files[a.name]
    assert resume.delivered_before == 4
    assert resume.keys == b"".join(f"key-{r:06}".encode() for r in (1, 2, 3, 4))
    fresh, delivered, refused = resume.split(events(a, *range(1, 9)))
    assert fresh.rows.tolist() == [5, 6, 8]
    assert (delivered, refused) == (5, 0)  # rows 1-4 delivered, row 7 settled
    # Only rows 5 and 6 may have reached the API unrecorded: rows 3 and 4 were acknowledged.
    assert plan.possibly_resent == 2
    assert checkpoint.runs()[-1].possibly_resent == 2
    assert checkpoint.take_leftover_inflight() == {}  # counted once, then cleared


def test_answered_requests_leave_nothing_in_flight(open_checkpoint, csv_sources):
    (a,) = csv_sources(**{"a.csv": export(4)})
    first_run = StateLedger(open_checkpoint(), TARGET)
    first_run.plan([a], force=False, restart=False)
    for seq, rows in enumerate([(1, 2), (3, 4)]):
        sent = batch(seq, events(a, *rows))
        token = first_run.sending(sent)
        first_run.refused(sent.events, "no")
        first_run.answered(token, sent)
    plan = StateLedger(open_checkpoint(), TARGET).plan([a], force=False, restart=False)
    assert plan.possibly_resent == 0
    assert plan.files[a.name].refused == {1: "no", 2: "no", 3: "no", 4: "no"}


def test_close_run_saves_each_file_and_the_run(open_checkpoint, csv_sources):
    a, b = csv_sources(**{"a.csv": export(3), "b.csv": export(2)})
    checkpoint = open_checkpoint()
    ledger = StateLedger(checkpoint, TARGET)
    ledger.plan([a, b], force=False, restart=False)
    sent = batch(0, events(a, 1, 2))
    ledger.read(a.name, rows=3, queued=2, rejected=1)
    token = ledger.sending(sent)
    ledger.delivered(sent)
    ledger.answered(token, sent)
    ledger.close_run("interrupted", {"events_sent": 2})

    saved = {r.path: (r.status, r.rows_read, r.delivered, r.rejected) for r in checkpoint.files()}
    assert saved == {a.name: ("partial", 3, 2, 1), b.name: ("partial", 0, 0, 0)}
    (run,) = checkpoint.runs()
    assert run.status == "interrupted"
    assert run.target == "org 'acme', project 'shop', source id '7301234567890123456'"
    assert run.ended_at is not None and run.ended_at >= run.started_at
    (figures,) = checkpoint.db.execute("SELECT figures FROM runs").fetchone()
    assert orjson.loads(figures) == {"events_sent": 2}


def test_fail_run_records_the_error_type(open_checkpoint, csv_sources):
    (a,) = csv_sources(**{"a.csv": export(1)})
    checkpoint = open_checkpoint()
    ledger = StateLedger(checkpoint, TARGET)
    ledger.plan([a], force=False, restart=False)
    ledger.fail_run(RuntimeError("boom"))
    assert checkpoint.runs()[0].status == "failed"
    (figures,) = checkpoint.db.execute("SELECT figures FROM runs").fetchone()
    assert orjson.loads(figures) == {"error": "RuntimeError"}


def test_a_changed_file_is_refused_and_restart_forgets_what_was_delivered(
    open_checkpoint, csv_sources
):
    (a,) = csv_sources(**{"a.csv": export(2)})
    checkpoint = open_checkpoint()
    ledger = StateLedger(checkpoint, TARGET)
    ledger.plan([a], force=False, restart=False)
    sent = batch(0, events(a, 1))
    token = ledger.sending(sent)
    ledger.delivered(sent)
    ledger.answered(token, sent)
    ledger.close_run("interrupted", {})
    (old,) = checkpoint.files()

    (changed,) = csv_sources(**{"a.csv": export(3, sku="T")})
    with pytest.raises(CheckpointError, match=r"changed since 1 of its events were delivered"):
        StateLedger(checkpoint, TARGET).plan([changed], force=False, restart=False)

    plan = StateLedger(checkpoint, TARGET).plan([changed], force=False, restart=True)
    resume = plan.files[changed.name]
    assert resume.fresh and resume.delivered_before == 0
    (kept,) = checkpoint.files()
    assert kept.id == resume.file_id
    assert kept.fingerprint == fingerprint(changed) != old.fingerprint
    assert checkpoint.delivered_count(kept.id) == 0


def test_an_input_gone_since_it_was_found_is_named(open_checkpoint, csv_sources):
    (a,) = csv_sources(**{"a.csv": export(1)})
    os.unlink(a.name)
    with pytest.raises(InputError, match=f"^{a.name}: cannot open "):
        StateLedger(open_checkpoint(), TARGET).plan([a], force=False, restart=False)
