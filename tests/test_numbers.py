"""Numbers are never rounded on the way: sent exactly or rejected with a reason, and a CSV
and a Parquet file of the same values send the same numbers under the same event ids."""

from __future__ import annotations

import re
from decimal import Decimal

import orjson
import pyarrow as pa
import pytest

from uploader.numbers import read_numbers

TS = "2024-05-02T14:38:24Z"
MAPPING = {"event": "Added to cart", "mapping": ["data.quantity=qty", "data.price=price"]}


def sent(batches):
    return [i for b in batches for g in orjson.loads(b.body)["track"] for i in g["payload"]]


def written(body: bytes, key: str) -> bytes:
    """A number as it is written in the JSON body."""
    match = re.search(rb'"' + key.encode() + rb'":([^,}]*)', body)
    assert match is not None
    return match.group(1)


def bodies_and_ids(run_plan, path, **options):
    _, batches, rejects = run_plan([path], **{**MAPPING, **options})
    return sent(batches), [(r.row, r.field, r.reason) for r in rejects]


@pytest.mark.parametrize(
    ("qty", "parquet_qty"),
    [
        ("9007199254740993", pa.array([9007199254740993], pa.int64())),  # 2**53 + 1
        ("9223372036854775807", pa.array([2**63 - 1], pa.int64())),
        ("3", pa.array([3], pa.int64())),
        ("3.0", pa.array([3.0], pa.float64())),
        ("12", pa.array([Decimal("12.00")], pa.decimal128(10, 2))),
    ],
)
def test_integers_are_sent_exactly_and_alike_from_csv_and_parquet(
    write_csv, write_parquet, run_plan, qty, parquet_qty
):
    csv_path = write_csv(f"ts,sku,user_id,qty\n{TS},S1,u1,{qty}\n")
    table = pa.table({"ts": [TS], "sku": ["S1"], "user_id": ["u1"], "qty": parquet_qty})
    from_csv, rejects = bodies_and_ids(run_plan, csv_path, mapping=["data.quantity=qty"])
    from_parquet, _ = bodies_and_ids(run_plan, write_parquet(table), mapping=["data.quantity=qty"])
    assert rejects == []
    assert from_csv == from_parquet  # the same body, eventId included
    assert from_csv[0]["data"]["quantity"] == int(Decimal(qty))
    _, batches, _ = run_plan([csv_path], **{**MAPPING, "mapping": ["data.quantity=qty"]})
    assert written(batches[0].body, "quantity") == str(int(Decimal(qty))).encode()


@pytest.mark.parametrize(
    ("price", "parquet_price", "json"),
    [
        ("9007199254740994", pa.array([9007199254740994], pa.int64()), b"9.007199254740994e+15"),
        ("94.86", pa.array([94.86], pa.float64()), b"94.86"),
        ("0.1", pa.array([0.1], pa.float32()), b"0.1"),  # a float32 as written, not widened
        ("-0.0", pa.array([-0.0], pa.float64()), b"0"),
        ("1.50", pa.array([Decimal("1.50")], pa.decimal128(10, 2)), b"1.5"),
        ("3", pa.array([3], pa.int64()), b"3"),
    ],
)
def test_numbers_are_sent_alike_from_csv_and_parquet(
    write_csv, write_parquet, run_plan, price, parquet_price, json
):
    csv_path = write_csv(f"ts,sku,user_id,price\n{TS},S1,u1,{price}\n")
    table = pa.table({"ts": [TS], "sku": ["S1"], "user_id": ["u1"], "price": parquet_price})
    from_csv, rejects = bodies_and_ids(run_plan, csv_path, mapping=["data.price=price"])
    from_parquet, _ = bodies_and_ids(run_plan, write_parquet(table), mapping=["data.price=price"])
    assert rejects == []
    assert from_csv == from_parquet
    _, batches, _ = run_plan([csv_path], **{**MAPPING, "mapping": ["data.price=price"]})
    assert written(batches[0].body, "price") == json


@pytest.mark.parametrize(
    ("column", "value", "cause"),
    [
        ("price", "9007199254740993", "more digits than a JSON number keeps (would be rounded)"),
        ("price", "0.30000000000000001", "more digits than a JSON number keeps"),
        ("price", "12345678901234567.5", "more digits than a JSON number keeps"),
        ("qty", "99999999999999999999", "too large for a 64-bit integer"),
        ("qty", "9223372036854775808", "too large for a 64-bit integer"),
        ("qty", "1e30", "too large for a 64-bit integer"),
        ("qty", "2.5", "not a whole number"),
        ("qty", "NaN", "not a number"),
        ("price", "inf", "not a number"),
        ("price", "1e400", "not a number"),
        ("price", "94,86", "written with a decimal comma (see --decimal)"),
        ("price", "0x1A", "not a number"),
    ],
)
def test_a_number_that_cannot_be_sent_exactly_is_a_reject(
    write_csv, run_plan, column, value, cause
):
    qty, price = (value, "1") if column == "qty" else ("1", value)
    path = write_csv(f'ts,sku,user_id,qty,price\n{TS},S1,u1,1,1\n{TS},S2,u1,"{qty}","{price}"\n')
    tally, batches, rejects = run_plan([path], **MAPPING)
    assert tally.events_valid == 1 and len(sent(batches)) == 1
    (reject,) = rejects
    field = "data.quantity" if column == "qty" else "data.price"
    assert (reject.row, reject.field) == (2, field)
    assert cause in reject.kind
    assert reject.reason.startswith(f"{field} ")
    assert f"(column {column!r})" in reject.reason


def test_inexact_numbers_say_how_to_send_them_exactly(write_csv, run_plan):
    path = write_csv(f"ts,sku,user_id,price\n{TS},S1,u1,9007199254740993\n")
    _, _, (reject,) = run_plan([path], event="Product viewed", mapping=["data.price=price"])
    assert reject.reason == (
        "data.price 9007199254740993 (column 'price') has more digits than a JSON number (a "
        "double) keeps, so it would be sent rounded; map it as an integer (--map "
        "data.price:integer=price) or as text (--map data.price:string=price)"
    )
    _, batches, rejects = run_plan(
        [path], event="Product viewed", mapping=["data.price:integer=price"]
    )
    assert rejects == [] and written(batches[0].body, "price") == b"9007199254740993"


def test_a_decimal_comma_is_read_with_the_decimal_option(tmp_path, write_csv, run_plan):
    path = tmp_path / "excel.csv"
    path.write_text(
        f"ts;sku;user_id;qty;price\n{TS};S1;17850,0;2;94,86\n{TS};S2;u1;3,0;1.234,50\n"
        f"{TS};S3;u1;1;,5\n",
        encoding="utf-8",
    )
    tally, batches, rejects = run_plan([path], **MAPPING, decimal=",")
    assert [i["data"]["price"] for i in sent(batches)] == [94.86, 0.5]
    assert [i["data"]["quantity"] for i in sent(batches)] == [2, 1]
    assert sent(batches)[0]["userId"] == "17850"  # an id that went through a float, too
    (reject,) = rejects
    assert (reject.row, reject.field) == (2, "data.price")
    assert "with --decimal , a '.' is not read" in reject.reason
    assert tally.rows_read == 3
    same = write_csv(f"ts,sku,user_id,qty,price\n{TS},S1,17850.0,2,94.86\n")
    assert sent(batches)[:1] == sent(run_plan([same], **MAPPING)[1])  # the same event id


def test_integer_and_number_fields_have_one_type_whatever_the_chunk():
    text = pa.array(["3", "2.5", None, " 7 ", ""])
    numbers, problems = read_numbers(text, path="data.price", name="p", kind="number")
    assert numbers.type == pa.float64() and numbers.to_pylist() == [3.0, 2.5, None, 7.0, None]
    ints, problems = read_numbers(text, path="data.quantity", name="q", kind="integer")
    assert ints.type == pa.int64() and ints.to_pylist() == [3, None, None, 7, None]
    assert list(problems) == [1]


@pytest.mark.parametrize(
    ("array", "kind", "values", "bad"),
    [
        (pa.array([2**64 - 1, 5], pa.uint64()), "integer", [None, 5], [0]),
        (pa.array([2**63 - 1, -(2**53)], pa.int64()), "number", [None, -(2.0**53)], [0]),
        (pa.array([1.5, float("inf"), float("nan")]), "number", [1.5, None, None], [1]),
        (pa.array([1e19, 4.0, -2.0]), "integer", [None, 4, -2], [0]),
        (pa.array(["a", "b", "a"]).dictionary_encode(), "number", [None] * 3, [0, 1, 2]),
    ],
)
def test_typed_columns(array, kind, values, bad):
    numbers, problems = read_numbers(array, path="data.x", name="x", kind=kind)
    assert numbers.to_pylist() == values
    assert sorted(problems) == bad
