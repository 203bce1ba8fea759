"""The bad-input corpus: every hostile file has one exact outcome, an exit code and the
message a person reads, or per-row rejects with their reasons; never a traceback.

The files are written at test time (tests/hostile_files.py)."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal

import orjson
import pandas as pd
import pyarrow as pa
import pytest

import uploader
from tests import hostile_files as hostile
from tests.hostile_files import HEADER, rows
from uploader import read
from uploader.cli import main
from uploader.errors import InputError
from uploader.inputs import fingerprint
from uploader.read import read_frames, resolve_sources

WHEN = 1714660704000  # 2024-05-02T14:38:24Z


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "Exception ignored" not in out + err
    return code, out, err


def error_of(capsys, *argv) -> str:
    """The one line a failed command prints, without its prefix (and checks exit 2)."""
    code, out, err = cli(capsys, "validate", *argv)
    assert (code, out) == (2, "")
    assert err.startswith("uploader: error: ") and err.endswith("\n") and err.count("\n") == 1
    return err[len("uploader: error: ") : -1]


def items(batches):
    return [i for b in batches for g in orjson.loads(b.body)["track"] for i in g["payload"]]


def rejected(rejects):
    return [(r.row, r.field, r.reason) for r in rejects]


# Not text at all


def test_binary_garbage_names_the_first_bad_byte(tmp_path, capsys):
    path = hostile.garbage(tmp_path / "dump.csv")
    data = path.read_bytes()
    with pytest.raises(UnicodeDecodeError) as info:
        data.decode("utf-8")
    bad = info.value
    line = data[: bad.start].count(b"\n") + 1
    shown = " ".join(f"{b:02x}" for b in data[bad.start : bad.end])
    assert error_of(capsys, path) == (
        f"{path}: not valid utf-8 text at byte offset {bad.start:,} (line {line:,}): bytes "
        f"{shown} ({bad.reason}); if the file is text in another encoding, give it with "
        "--encoding (e.g. --encoding cp1252 for Excel on Windows, --encoding utf-16)"
    )


def test_binary_garbage_named_parquet(tmp_path, capsys):
    path = hostile.garbage(tmp_path / "dump.parquet")
    assert error_of(capsys, path) == (
        f"{path}: not a readable Parquet file (Parquet magic bytes not found in footer. "
        "Either the file is corrupted or this is not a parquet file.)"
    )


def test_nul_bytes_in_the_header_line(tmp_path, capsys):
    path = tmp_path / "nul.csv"
    path.write_bytes(b"\x00" * 64 + b"\n" + b"\x00" * 64 + b"\n")
    assert error_of(capsys, path) == (
        f"{path}: the header line holds NUL bytes, so this is not utf-8 text: a binary file, "
        "or UTF-16 without a byte order mark (then give --encoding utf-16-le or utf-16-be)"
    )


# Structure


@pytest.mark.parametrize("content", [b"", b"\n\n\r\n", b"\xef\xbb\xbf"])
def test_an_empty_file(tmp_path, capsys, content):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    assert error_of(capsys, path) == f"{path}: the file is empty (no header line)"


@pytest.mark.parametrize("header", [HEADER + "\n", HEADER, HEADER + "\r\n"])
def test_a_header_only_file_has_no_rows_and_no_rejects(write_csv, capsys, header):
    code, out, _ = cli(capsys, "validate", write_csv(header))
    assert code == 0
    assert "Read 0 rows from 1 file." in out
    assert "Valid events: 0\nRejected rows: 0\n" in out
    assert "Rows accounted for: 0 read = 0 valid + 0 rejected + 0 duplicates collapsed" in out
    assert "Requests: 0 (0 bytes of JSON)" in out


def test_duplicate_column_names(write_csv, capsys, write_parquet):
    path = write_csv("ts,event,sku,user_id,sku\n" + rows(1).rstrip("\n") + ",X\n")
    assert error_of(capsys, path) == (
        f"{path}: the header names 'sku' more than once; rename the columns so that each "
        "name is unique"
    )
    table = pa.Table.from_arrays([pa.array(["a"]), pa.array(["b"])], names=["sku", "sku"])
    parquet = write_parquet(table)
    assert error_of(capsys, parquet) == (
        f"{parquet}: the header names 'sku' more than once; rename the columns so that each "
        "name is unique"
    )


def test_ragged_rows_are_rejected_one_by_one(write_csv, run_plan, capsys):
    text = (
        f"{HEADER}\n{rows(1)}x,y\n{rows(1, 3).rstrip()},extra,more\n{rows(1, 4)}"
        "2024-05-02T14:38:24Z,view\n"
    )
    path = write_csv(text)
    tally, batches, rejects = run_plan([path])
    assert [i["data"]["productId"] for i in items(batches)] == ["SKU-1", "SKU-4"]
    assert rejected(rejects) == [
        (2, "row", "malformed CSV line: expected 4 columns, found 2: x,y"),
        (
            3,
            "row",
            "malformed CSV line: expected 4 columns, found 6: "
            "2024-05-02T14:38:24Z,view,SKU-3,u3,extra,more",
        ),
        (5, "row", "malformed CSV line: expected 4 columns, found 2: 2024-05-02T14:38:24Z,view"),
    ]
    assert (tally.rows_read, tally.events_valid, tally.events_rejected) == (5, 2, 3)
    code, out, _ = cli(capsys, "validate", path)
    assert code == 1
    assert "       3  row: malformed CSV line (wrong number of fields)" in out


def test_quoted_line_breaks_stay_in_their_value(write_csv, run_plan):
    path = write_csv(
        "ts,event,sku,user_id,note\n"
        '2024-05-02T14:38:24Z,view,SKU-1,u1,"two\nlines"\n'
        '2024-05-02T14:38:24Z,view,SKU-2,u2,"crlf\r\ninside, and a "" quote"\n'
        "2024-05-02T14:38:24Z,view,,u3,plain\n"
    )
    _, batches, rejects = run_plan([path], mapping=["data.note=note"])
    assert [i["data"]["note"] for i in items(batches)] == [
        "two\nlines",
        'crlf\r\ninside, and a " quote',
    ]
    assert rejected(rejects) == [(3, "data.productId", "productId is blank (column 'sku')")]


def test_a_10_mb_field(tmp_path, run_plan):
    path = tmp_path / "long.csv"
    big = "x" * (10 * 1024 * 1024)
    path.write_text(
        f"ts,event,sku,user_id,note\n{rows(1).rstrip()},short\n"
        f'{rows(1, 2).rstrip()},"{big}"\n{rows(1, 3).rstrip()},short\n',
        encoding="utf-8",
    )
    tally, batches, rejects = run_plan([path])  # the note is not sent
    assert rejects == [] and tally.events_valid == 3
    assert [i["data"]["productId"] for i in items(batches)] == ["SKU-1", "SKU-2", "SKU-3"]
    tally, batches, rejects = run_plan([path], mapping=["data.note=note"], chunk_rows=1)
    assert [i["data"]["productId"] for i in items(batches)] == ["SKU-1", "SKU-3"]
    ((row, field, reason),) = rejected(rejects)
    assert (row, field) == (2, "row")
    assert reason.startswith("the event alone makes a 10485")
    assert reason.endswith("-byte request, above --max-request-bytes 524288; shorten its "
                           "values or raise the limit")  # fmt: skip


def test_a_quote_never_closed(write_csv, run_plan):
    path = write_csv(f'{HEADER}\n{rows(2)}2024-05-02T14:38:24Z,view,"SKU-3,u3\n{rows(20, 4)}')
    tally, batches, rejects = run_plan([path])
    assert len(items(batches)) == 2 and tally.rows_read == 3
    ((row, field, reason),) = rejected(rejects)
    assert (row, field) == (3, "row")
    assert reason.startswith(
        "malformed CSV line: expected 4 columns, found 3 (its quoted value runs over 21 "
        'lines: a quote never closed?): 2024-05-02T14:38:24Z,view,"SKU-3,u3\n'
    )


def test_a_quote_never_closed_in_a_big_file(tmp_path, capsys, monkeypatch):
    # Scaled down: 64 KiB blocks that may grow to 512 KiB (1 MiB and 64 MiB in real runs).
    monkeypatch.setattr(read, "CSV_BLOCK_BYTES", 64 << 10)
    monkeypatch.setattr(read, "MAX_CSV_BLOCK_BYTES", 512 << 10)
    path = tmp_path / "open.csv"
    path.write_text(
        f'{HEADER}\n{rows(10)}2024-05-02T14:38:24Z,view,"SKU-11,u11\n' + rows(50_000, 12)
    )
    assert error_of(capsys, path) == (
        f"{path}: a row after row 10 is longer than 512 KiB. This is almost always a quote "
        '(") opened and never closed, which makes the rest of the file one field: check the '
        "quoting there"
    )


def test_nul_bytes_in_values_are_kept_and_escaped(write_csv, run_plan, tmp_path, capsys):
    path = write_csv(f"{HEADER}\n2024-05-02T14:38:24Z,view,A\x00B,u1\n2024-05-02T14:38:24Z,x,S,u\n")
    _, batches, rejects = run_plan([path])
    (item,) = items(batches)
    assert item["data"]["productId"] == "A\x00B"
    assert b'"productId":"A\\u0000B"' in batches[0].body
    assert [r.row for r in rejects] == [2]
    code, _, _ = cli(capsys, "validate", path, "--rejects", tmp_path / "rejects.csv")
    assert code == 1 and (tmp_path / "rejects.csv").exists()


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_ends_of_every_kind(write_csv, run_plan, newline):
    path = write_csv(HEADER + newline + rows(3, newline=newline))
    tally, batches, rejects = run_plan([path])
    assert rejects == [] and tally.rows_read == 3
    reference = run_plan([write_csv(HEADER + "\n" + rows(3), "lf.csv")])[1]
    assert items(batches) == items(reference)


@pytest.mark.parametrize(("codec", "suffix"), [("gzip", ".gz"), ("zstd", ".zst")])
def test_a_truncated_compressed_file(tmp_path, capsys, codec, suffix):
    small = hostile.truncated(tmp_path / f"small.csv{suffix}", HEADER + "\n" + rows(5), codec)
    # Cut after the first block: rows are read up to the cut, then the run stops.
    big = hostile.truncated(
        tmp_path / f"big.csv{suffix}", HEADER + "\n" + rows(200_000), codec, keep=0.8
    )
    for path in (small, big):
        message = error_of(capsys, path)
        assert message.startswith(f"{path}: cannot read past byte offset ")
        assert message.endswith(
            " of the decompressed text (Truncated compressed stream): the compressed file is "
            "cut short; copy or download it again"
        )


def test_a_parquet_file_with_a_damaged_footer(tmp_path, capsys):
    path = hostile.damaged_footer(tmp_path / "broken.parquet", hostile.typed_table())
    message = error_of(capsys, path)
    assert message.startswith(f"{path}: not a readable Parquet file (")
    assert message.endswith(")") and "\n" not in message


# Parquet column types

NESTED = {  # column name: (values, how the message names them)
    "tags": (pa.array([[1, 2], [], None], pa.list_(pa.int64())), "lists (list<item: int64>)"),
    "attrs": (
        pa.array([{"a": 1}, {"a": 2}, None], pa.struct([("a", pa.int64())])),
        "records (struct<a: int64>)",
    ),
    "props": (
        pa.array([[("k", "v")], [], None], pa.map_(pa.string(), pa.string())),
        "maps (map<string, string>)",
    ),
    "clock": (
        pa.array([dt.time(12, 0)] * 3, pa.time64("us")),
        "times of day without a date (time64[us])",
    ),
}
OTHER = {
    "amount": pa.array([Decimal("1.50"), Decimal("2"), None], pa.decimal128(10, 2)),
    "color": pa.array(["red", "blue", "red"]).dictionary_encode(),
    "birthday": pa.array([dt.date(2024, 5, 1)] * 3, pa.date32()),
    "blob": pa.array([b"ab", b"\xff\xfe", None], pa.binary()),
}


def test_parquet_columns_of_any_type_are_fine_unmapped(write_parquet, capsys):
    columns = {name: array for name, (array, _) in NESTED.items()} | OTHER
    path = write_parquet(hostile.typed_table(**columns))
    code, out, _ = cli(capsys, "validate", path)
    assert code == 0 and "Valid events: 3" in out
    assert "Columns not sent: tags, attrs, props, clock, amount, color, birthday, blob." in out


@pytest.mark.parametrize("kind", sorted(NESTED))
def test_a_nested_or_time_column_cannot_be_mapped(write_parquet, capsys, kind):
    array, words = NESTED[kind]
    path = write_parquet(hostile.typed_table(extra=array))
    words = words.replace("item", "element") if kind == "tags" else words  # Parquet's name
    words = words.replace("string>", "string ('extra')>") if kind == "props" else words
    assert error_of(capsys, path, "--map", "data.extra=extra") == (
        f"{path}: column 'extra' holds {words}, which cannot fill data.extra; map a column "
        "of text, integers, floats, decimals, booleans, dates, timestamps (columns that are "
        "not mapped are not sent)"
    )
    assert "which cannot fill timestamp" in error_of(capsys, path, "--map", "timestamp=extra")


def test_typed_parquet_columns_map_to_what_they_hold(write_parquet, run_plan):
    path = write_parquet(hostile.typed_table(**OTHER))
    mapping = ["data.amount=amount", "data.color=color", "data.day=birthday", "data.b=blob"]
    _, batches, rejects = run_plan([path], mapping=mapping)
    assert [i["data"] for i in items(batches)] == [
        {"productId": "S1", "amount": 1.5, "color": "red", "day": "2024-05-01", "b": "ab"},
        {"productId": "S3", "color": "red", "day": "2024-05-01"},
    ]
    assert rejected(rejects) == [
        (2, "data.b", "data.b (column 'blob') is binary data that is not UTF-8 text")
    ]


def test_in_memory_tables_with_nested_values_and_far_instants():
    frame = pd.DataFrame(
        {"ts": ["2024-05-02T14:38:24Z"] * 2, "event": ["view"] * 2, "sku": ["a", "b"],
         "user_id": ["u", "v"], "tags": [[1, 2], [3]], "meta": [{"a": 1}, {"b": 2}]}
    )  # fmt: skip
    check = uploader.validate(frame, progress=False)  # its fingerprint used to raise
    assert (check.events_valid, check.events_rejected) == (2, 0)
    with pytest.raises(InputError, match=r"column 'tags' holds lists \(list<item: int64>\)"):
        uploader.validate(frame, progress=False, mapping=["data.tags=tags"])
    table = hostile.typed_table().set_column(
        0, "ts", pa.array([2**62, WHEN // 1000, None], pa.timestamp("s"))
    )
    check = uploader.validate(table, progress=False)
    assert (check.events_valid, check.events_rejected) == (1, 2)
    assert check.rejects["ts"].tolist()[0] == "4611686018427387904 (timestamp[s])"


# Timestamps of every unit and zone


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("zone", [None, "UTC", "Europe/London", "+05:30", "America/New_York"])
def test_arrow_timestamps_of_every_unit_and_zone(run_plan, write_parquet, unit, zone):
    instant = pa.array([WHEN * 1_000_000 + 123_456_789], pa.timestamp("ns", tz="UTC"))
    column = instant.cast(pa.timestamp(unit, tz="UTC"), safe=False).cast(
        pa.timestamp(unit, tz=zone) if zone else pa.int64()
    )
    if zone is None:  # naive: the wall time, read in the configured zone
        column = column.cast(pa.timestamp(unit))
    table = hostile.typed_table().slice(0, 1).set_column(0, "ts", column)
    expected = WHEN + (0 if unit == "s" else 123)  # sub-millisecond parts are cut
    for inputs in ([table], [write_parquet(table)]):
        _, batches, rejects = run_plan(inputs)
        assert rejects == []
        assert [i["timestamp"] for i in items(batches)] == [expected]
    if zone is None:  # a wall time in London in May is an hour ahead of UTC
        _, batches, _ = run_plan([table], timezone="Europe/London")
        assert [i["timestamp"] for i in items(batches)] == [expected - 3_600_000]


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-02T14:38:24Z",
        "2024-05-02T15:38:24+01:00",
        "2024-05-02T10:38:24-0400",
        "2024-05-02 14:38:24 UTC",
        "2024-05-02T14:38:24.000999Z",
        "2024-05-02 14:38:24",
        "1714660704",
        "1714660704000",
        "1714660704000000",
        "1714660704000999999",
        "1714660704.0001",
    ],
)
def test_text_timestamps_of_every_unit_and_zone(write_csv, run_plan, text):
    path = write_csv(f"{HEADER}\n{text},view,S1,u1\n")
    _, batches, rejects = run_plan([path])
    assert rejects == []
    assert [i["timestamp"] for i in items(batches)] == [WHEN]


@pytest.mark.parametrize(
    ("column", "reason"),
    [
        (
            pa.array([dt.datetime(1, 1, 1)], pa.timestamp("us")),
            "timestamp 1-01-01 00:00:00 UTC is outside 2010-01-01..2039-12-31",
        ),
        (
            pa.array([dt.datetime(9999, 12, 31)], pa.timestamp("us", tz="UTC")),
            "timestamp 9999-12-31 00:00:00 UTC is outside 2010-01-01..2039-12-31",
        ),
        (pa.array([2**62], pa.timestamp("s")), "is outside 2010-01-01..2039-12-31"),
        (pa.array([-(2**63) + 1], pa.timestamp("ns")), "1677-09-21 00:12:43 UTC is outside"),
        (pa.array([2**64 - 1], pa.uint64()), "is not a date in 2010-2039 as seconds"),
        (pa.array(["9999-12-31T23:59:59Z"]), "9999-12-31 23:59:59 UTC is outside"),
        (pa.array(["0001-01-01"]), "timestamp around the year 1 is outside"),  # in Paris: 0000
    ],
)
def test_timestamps_far_from_now_are_rejects(run_plan, column, reason):
    table = hostile.typed_table().slice(0, 1).set_column(0, "ts", column)
    tally, _, rejects = run_plan([table], timezone="Europe/Paris")
    ((row, field, said),) = rejected(rejects)
    assert (row, field) == (1, "timestamp") and reason in said
    assert tally.events_valid == 0


# Ids


def test_ids_from_text_are_kept_as_written(write_csv, run_plan):
    ids = ["17850.0", "-5", "1.5", "NaN", "inf", "123456789012345678901234567890"]
    path = write_csv(HEADER + "\n" + "".join(f"2024-05-02T14:38:24Z,view,S{i},{u}\n"
                                             for i, u in enumerate(ids)))  # fmt: skip
    tally, batches, rejects = run_plan([path])
    assert rejects == []
    assert [i["userId"] for i in items(batches)] == ["17850", "-5", "1.5", "NaN", "inf",
                                                     "123456789012345678901234567890"]  # fmt: skip
    assert tally.ids_normalised == 1


def test_ids_from_typed_columns(run_plan, write_parquet):
    users = {
        "float": pa.array([17850.0, -5.0, 1.5, float("nan"), float("inf"), 1.2345678901234568e29]),
        "decimal": pa.array([Decimal("123456789012345678901234567890")] * 6, pa.decimal128(38)),
        "uint64": pa.array([2**64 - 1, 0, 1, 2, 3, 4], pa.uint64()),
    }
    table = pa.table({"ts": [WHEN] * 6, "event": ["view"] * 6, "sku": [f"S{i}" for i in range(6)]})
    path = write_parquet(table.append_column("user_id", users["float"]))
    tally, batches, rejects = run_plan([path], timestamp_unit="ms")
    assert [i["userId"] for i in items(batches)] == ["17850", "-5", "1.5"]
    assert tally.ids_normalised == 2
    assert rejected(rejects) == [
        (4, "identity", "no userId, profileId or accountId: 'user_id' blank"),  # NaN: none
        (5, "userId", "userId inf (column 'user_id') is not an id: an infinite float"),
        (
            6,
            "userId",
            "userId 1.2345678901234568e+29 (column 'user_id') is not an id: a float of 2**53 "
            "or more, whose digits may have been lost before the export; export the column "
            "as text or as integers",
        ),
    ]
    for kind, expected in [("decimal", "123456789012345678901234567890"),
                           ("uint64", "18446744073709551615")]:  # fmt: skip
        path = write_parquet(table.append_column("user_id", users[kind]), f"{kind}.parquet")
        _, batches, rejects = run_plan([path], timestamp_unit="ms")
        assert rejects == [] and items(batches)[0]["userId"] == expected


# Files that move under the reader


def test_a_file_that_grows_while_it_is_read(write_csv):
    path = write_csv(HEADER + "\n" + rows(5))
    (source,) = resolve_sources([path])
    chunks = read_frames([source], chunk_rows=2)
    first = next(chunks)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(rows(1000, 6))
    rest = list(chunks)
    read = [r for c in [first, *rest] for r in c.rows.to_pylist()]
    assert read == [1, 2, 3, 4, 5]  # as it was found: the new rows are for the next run


def test_a_file_that_grows_keeps_the_fingerprint_it_was_found_with(write_csv):
    path = write_csv(HEADER + "\n" + rows(5))
    (source,) = resolve_sources([path])
    before = fingerprint(source)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(rows(10, 6))
    assert fingerprint(source) == before
    assert fingerprint(resolve_sources([path])[0]) != before


def test_a_folder_with_an_unreadable_file(tmp_path, capsys):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "a.csv").write_text(HEADER + "\n" + rows(2))
    locked = folder / "b.csv"
    locked.write_text(HEADER + "\n" + rows(2, 3))
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):  # root reads it all the same
            code, out, _ = cli(capsys, "validate", folder)
            assert code == 0 and "Read 4 rows from 2 files." in out
        else:
            assert error_of(capsys, folder) == f"{locked}: cannot open (Permission denied)"
    finally:
        locked.chmod(0o644)


def test_a_symlink_loop_reads_each_file_once(tmp_path, capsys):
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "a.csv").write_text(HEADER + "\n" + rows(2))
    (folder / "again").symlink_to(folder)  # a link back up: a loop
    code, out, _ = cli(capsys, "validate", folder)
    assert code == 0 and "Read 2 rows from 1 file." in out
    code, out, _ = cli(capsys, "validate", f"{folder}/**/*.csv")
    assert code == 0 and "Read 2 rows from 1 file." in out
    (folder / "a-link.csv").symlink_to(folder / "a.csv")
    code, out, _ = cli(capsys, "validate", folder, folder / "a.csv")
    assert code == 0 and "Read 2 rows from 1 file." in out
    knot = tmp_path / "knot.csv"
    knot.symlink_to(knot)
    assert error_of(capsys, knot) == f"{knot}: cannot open (Too many levels of symbolic links)"
