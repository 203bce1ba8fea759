"""What a run writes besides the API: whole files under the asked-for name, or none."""

from __future__ import annotations

import csv

import orjson
import pytest

from uploader.sinks import AtomicFile, BodiesWriter, RejectsWriter, write_json
from uploader.validation import RowReject


def names_in(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# --- AtomicFile ----------------------------------------------------------------------------


def test_a_file_is_written_under_a_partial_name_and_renamed_on_commit(tmp_path):
    path = tmp_path / "out" / "deeper" / "report.json"
    out = AtomicFile(str(path))
    out.fh.write(b"half")
    out.fh.flush()
    assert names_in(tmp_path) == ["out/deeper/report.json.partial"]
    out.fh.write(b" and whole")
    out.commit()
    assert names_in(tmp_path) == ["out/deeper/report.json"]
    assert path.read_bytes() == b"half and whole"


def test_abandon_leaves_no_file_at_all(tmp_path):
    out = AtomicFile(str(tmp_path / "rejects.csv"), "w", encoding="utf-8")
    out.fh.write("file,row\n")
    out.abandon()
    assert names_in(tmp_path) == []


def test_an_earlier_file_stays_whole_until_commit_and_after_abandon(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("the earlier run's")
    out = AtomicFile(str(path), "w")
    out.fh.write("this run's, half written")
    out.fh.flush()
    assert path.read_text() == "the earlier run's"
    out.abandon()
    assert path.read_text() == "the earlier run's"
    assert names_in(tmp_path) == ["report.json"]

    out = AtomicFile(str(path), "w")
    out.fh.write("this run's")
    out.commit()
    assert path.read_text() == "this run's"


def test_abandon_after_the_partial_file_was_removed_does_not_fail(tmp_path):
    out = AtomicFile(str(tmp_path / "x.jsonl"))
    (tmp_path / "x.jsonl.partial").unlink()
    out.abandon()
    assert names_in(tmp_path) == []


# --- RejectsWriter -------------------------------------------------------------------------


def test_rejects_are_written_with_their_original_columns(tmp_path):
    path = tmp_path / "rejects.csv"
    writer = RejectsWriter(str(path), ["ts", "sku", "reason", "ts", "user_id"])
    writer.write(
        [
            RowReject("a.csv", 4, "data.productId", "productId is blank (column 'sku')",
                      {"ts": "2024-05-02", "sku": None, "user_id": 17850, "reason": "r"}),
            RowReject("b.csv", 9, "row", "malformed CSV line: a, \"b\"\nc"),
        ]
    )  # fmt: skip
    writer.write([])
    assert not path.exists()  # not before close
    writer.close()
    assert writer.count == 2
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    # An input column named like one of the first four is not repeated.
    assert rows == [
        ["file", "row", "field", "reason", "ts", "sku", "user_id"],
        ["a.csv", "4", "data.productId", "productId is blank (column 'sku')",
         "2024-05-02", "", "17850"],
        ["b.csv", "9", "row", "malformed CSV line: a, \"b\"\nc", "", "", ""],
    ]  # fmt: skip
    assert names_in(tmp_path) == ["rejects.csv"]


def test_abandoned_rejects_leave_nothing(tmp_path):
    writer = RejectsWriter(str(tmp_path / "rejects.csv"), ["sku"])
    writer.write([RowReject("a.csv", 1, "row", "bad", {"sku": "S1"})])
    writer.abandon()
    assert names_in(tmp_path) == []


# --- BodiesWriter --------------------------------------------------------------------------


def test_bodies_are_one_per_line_in_the_order_written(tmp_path):
    path = tmp_path / "dry" / "requests.jsonl"
    writer = BodiesWriter(str(path))
    bodies = [b'{"track":[1]}', b'{"track":[2]}', b'{"track":[3]}']
    for body in bodies:
        writer.write(body)
    writer.close()
    assert writer.count == 3
    assert path.read_bytes() == b'{"track":[1]}\n{"track":[2]}\n{"track":[3]}\n'


def test_abandoned_bodies_leave_nothing(tmp_path):
    writer = BodiesWriter(str(tmp_path / "requests.jsonl"))
    writer.write(b"{}")
    writer.abandon()
    assert names_in(tmp_path) == []


# --- write_json ----------------------------------------------------------------------------


def test_write_json_writes_indented_json_and_a_newline(tmp_path):
    path = tmp_path / "report.json"
    write_json(str(path), {"rows_read": 3, "by_event": {"Product viewed": 2}})
    assert path.read_bytes() == (
        b'{\n  "rows_read": 3,\n  "by_event": {\n    "Product viewed": 2\n  }\n}\n'
    )
    assert orjson.loads(path.read_bytes()) == {"rows_read": 3, "by_event": {"Product viewed": 2}}


def test_write_json_that_fails_leaves_the_earlier_file_and_no_partial(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("{}\n")
    with pytest.raises(TypeError):
        write_json(str(path), {"not json": object()})
    assert path.read_text() == "{}\n"
    assert names_in(tmp_path) == ["report.json"]
