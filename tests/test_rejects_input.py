"""A rejects file is an input: its rows, once fixed, are sent with the same mapping, and
each gets the eventId its row would have had in the original file."""

from __future__ import annotations

import csv
from datetime import UTC, datetime

import orjson
import pyarrow as pa

from uploader.cli import main

MAPPING = ["--map", "data.quantity=qty", "--duplicates", "collapse", "-q"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def sent(tmp_path, capsys, path, name, *more):
    out = tmp_path / name
    code, stdout, _ = run(capsys, "upload", path, *MAPPING, *more, "--dry-run", "--out", out)
    bodies = (out / "requests.jsonl").read_bytes().splitlines()
    items = [i for b in bodies for g in orjson.loads(b)["track"] for i in g["payload"]]
    return code, stdout, {i["data"]["productId"]: i for i in items}, out / "rejects.csv"


def fix(rejects, column, value):
    """Edit the rejects file as a person would: set one column on every row."""
    with open(rejects, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    at = rows[0].index(column)
    for row in rows[1:]:
        row[at] = value
    with open(rejects, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)


CSV = """event_time,event_type,product_id,user_id,price,qty,session
2024-05-02T10:00:00Z,view,S1,17850.0,9.5,1,x
2024-05-02T10:00:01Z,purchased,S2,17851.0,3.25,2,y
2024-05-02T10:00:02Z,cart,S3,17852.0,0.1,1,z
"""


def test_a_fixed_rejects_file_sends_its_rows_with_the_original_ids(capsys, write_csv, tmp_path):
    original = write_csv(CSV, "orders.csv")
    code, _, _, rejects = sent(tmp_path, capsys, original, "first")
    assert code == 1
    fix(rejects, "event_type", "purchase")
    code, out, again, _ = sent(tmp_path, capsys, rejects, "again")
    assert code == 0
    assert (
        "  A rejects file: its columns file, row, field, reason are an earlier run's notes, "
        "not mapped and not sent; each row keeps the eventId of its original row." in out
    )
    assert "Columns not sent: session." in out
    fixed = write_csv(CSV.replace("purchased", "purchase"), "fixed.csv")
    _, _, expected, _ = sent(tmp_path, capsys, fixed, "expected")
    assert again["S2"] == expected["S2"]


def test_typed_parquet_values_written_as_text_keep_their_ids(capsys, write_parquet, tmp_path):
    def table(event: str) -> pa.Table:
        return pa.table(
            {
                "event_time": pa.array(
                    [datetime(2024, 5, 2, 10, 0, i, 123000, tzinfo=UTC) for i in range(3)],
                    pa.timestamp("ms", "UTC"),
                ),
                "event_type": ["view", event, "cart"],
                "product_id": pa.array([1.0, 2.0, 3.0]),  # ids exported as floats
                "user_id": pa.array([17850, 17851, 17852], pa.int64()),
                "price": pa.array([9.5, 3.0, 0.1], pa.float32()),
                "qty": pa.array([1, 2, 1], pa.int32()),
                "gift": pa.array([True, False, None]),
            }
        )

    gift = ("--map", "data.gift=gift")
    original = write_parquet(table("purchased"), "orders.parquet")
    code, _, _, rejects = sent(tmp_path, capsys, original, "first", *gift)
    assert code == 1
    fix(rejects, "event_type", "purchase")
    _, _, again, _ = sent(tmp_path, capsys, rejects, "again", *gift)
    fixed = write_parquet(table("purchase"), "fixed.parquet")
    _, _, expected, _ = sent(tmp_path, capsys, fixed, "expected", *gift)
    assert again["2"] == expected["2"]
    assert again["2"]["data"]["gift"] == "false"
