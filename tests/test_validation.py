"""Each rule of the Track Events API contract, through the real pipeline on real files."""

from __future__ import annotations

import orjson
import pytest

HEADER = "ts,event,sku,user_id,profile_id,another_user_id,qty\n"
GOOD = "2024-05-02T14:38:24Z,view,SKU-1,u1,,,"


def items(batches):
    out = []
    for batch in batches:
        for group in orjson.loads(batch.body)["track"]:
            out.extend((group["name"], item) for item in group["payload"])
    return out


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        ("2024-05-02T14:38:24Z,view,   ,u1,,,", "data.productId", "productId is blank"),
        ("2024-05-02T14:38:24Z,view,SKU-1, , ,,", "identity", "no userId, profileId or accountId"),
        ("2024-05-02T14:38:24Z,view,SKU-1,,,a9,", "identity", "only anotherUserId is set"),
        ("2024-05-02T14:38:24Z,like,SKU-1,u1,,,", "name", "event 'like' is not one of"),
        ("2024-05-02T14:38:24Z,,SKU-1,u1,,,", "name", "the event column is empty"),
        (",view,SKU-1,u1,,,", "timestamp", "timestamp is blank"),
        ("2009-12-31T23:59:59Z,view,SKU-1,u1,,,", "timestamp", "outside 2010-01-01"),
        ("2024-05-02T14:38:24Z,cart,SKU-1,u1,,,0", "data.quantity", "quantity 0 is not a positive"),
        (
            "2024-05-02T14:38:24Z,cart,SKU-1,u1,,,-3",
            "data.quantity",
            "quantity -3 is not a positive",
        ),
        ("2024-05-02T14:38:24Z,cart,SKU-1,u1,,,2.5", "data.quantity", "is not a whole number"),
        ("2024-05-02T14:38:24Z,cart,SKU-1,u1,,,two", "data.quantity", "is not a number"),
    ],
)
def test_a_bad_row_is_rejected_with_file_row_field_and_reason(
    write_csv, run_plan, row, field, reason
):
    path = write_csv(HEADER + GOOD + "\n" + row + "\n")
    tally, batches, rejects = run_plan([path], mapping=["data.quantity=qty"])
    assert [(r.file, r.row, r.field) for r in rejects] == [(str(path), 2, field)]
    assert reason in rejects[0].reason
    assert tally.events_valid == 1 and tally.events_rejected == 1
    assert len(items(batches)) == 1  # the good row is still sent


def test_rejects_carry_the_original_values(write_csv, run_plan):
    path = write_csv(HEADER + "2024-05-02T14:38:24Z,view,,u1,,,\n")
    _, _, rejects = run_plan([path])
    assert rejects[0].original["user_id"] == "u1"
    assert rejects[0].original["ts"] == "2024-05-02T14:38:24Z"


def test_profile_or_account_alone_is_an_identity(write_csv, run_plan):
    path = write_csv(HEADER + "2024-05-02T14:38:24Z,view,SKU-1,,p-7,,\n")
    _tally, batches, rejects = run_plan([path])
    assert rejects == []
    assert items(batches)[0][1]["profileId"] == "p-7"


def test_ids_are_trimmed_and_integral_floats_normalised(write_csv, run_plan):
    path = write_csv(HEADER + "2024-05-02T14:38:24Z,view, SKU-1 ,17850.0,,,\n")
    tally, batches, _ = run_plan([path])
    _, item = items(batches)[0]
    assert item["userId"] == "17850"
    assert item["data"]["productId"] == "SKU-1"
    assert tally.ids_normalised == 1


def test_every_row_is_accounted_for(write_csv, run_plan):
    body = "\n".join(
        [GOOD, GOOD, "2024-05-02T14:38:24Z,view,,u1,,,", "x,y", "2024-05-02T14:38:24Z,skip,S,u,,,"]
    )
    path = write_csv(HEADER + body + "\n")
    tally, _, rejects = run_plan([path], event_map=["skip=ignore"])
    assert tally.rows_read == 5
    accounted = (
        tally.events_valid + tally.duplicates_collapsed + tally.events_rejected + tally.rows_ignored
    )
    assert accounted == tally.rows_read
    assert tally.duplicates_collapsed == 1
    assert tally.rows_ignored == 1
    assert sorted(r.row for r in rejects) == [3, 4]


def test_items_never_carry_null_nan_or_top_level_product(write_csv, run_plan):
    path = write_csv(
        "ts,event,sku,user_id,price,qty\n"
        "2024-05-02T14:38:24Z,view,S1,u1,,\n"
        "2024-05-02T14:38:24Z,view,S2,u1,NaN,\n"
    )
    _tally, batches, rejects = run_plan([path], mapping=["data.quantity=qty"])
    body = b"".join(b.body for b in batches)
    assert b"null" not in body and b"NaN" not in body
    ((_name, item),) = items(batches)
    assert item == {
        "eventId": item["eventId"],
        "userId": "u1",
        "timestamp": 1714660704000,
        "data": {"productId": "S1"},
    }
    assert rejects[0].field == "data.price"


def test_duplicate_given_event_id_is_rejected_on_its_second_use(write_csv, run_plan):
    path = write_csv("ts,event,sku,user_id,event_id\n" + "\n".join(
        f"2024-05-02T14:38:2{i}Z,view,S{i},u1,{eid}" for i, eid in enumerate(["a", "b", " a "])
    ) + "\n")  # fmt: skip
    _, batches, rejects = run_plan([path], mapping=["eventId=event_id"])
    assert [item["eventId"] for _, item in items(batches)] == ["a", "b"]
    assert [(r.row, r.field) for r in rejects] == [(3, "eventId")]
    assert "also used by" in rejects[0].reason and "row 1" in rejects[0].reason


def test_an_ignored_row_is_only_ignored_whatever_else_is_wrong_with_it(write_csv, run_plan):
    path = write_csv(HEADER + GOOD + "\n" + "not a date,skip,,,,,\n")
    tally, _, rejects = run_plan([path], event_map=["skip=ignore"])
    assert rejects == []
    assert (tally.rows_read, tally.events_valid, tally.rows_ignored) == (2, 1, 1)
