from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from uploader.errors import InputError
from uploader.read import read_frames, resolve_sources


def rows_and_values(path: Path | str, column: str, chunk_rows: int) -> list[tuple[int, str]]:
    out = []
    for chunk in read_frames(resolve_sources([path]), chunk_rows=chunk_rows):
        out.extend(zip(chunk.rows.to_pylist(), chunk.table.column(column).to_pylist(), strict=True))
    return out


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 7, 1000])
def test_row_numbers_are_source_rows_across_chunk_boundaries(write_csv, chunk_rows):
    lines = "\n".join(f"v{i}" for i in range(1, 11))
    path = write_csv("col\n" + lines + "\n")
    got = rows_and_values(path, "col", chunk_rows)
    assert got == [(i, f"v{i}") for i in range(1, 11)]


@pytest.mark.parametrize("name", ["x.csv.gz", "x.csv.bz2", "x.csv.zst"])
def test_compressed_csv_is_read(write_csv, name):
    path = write_csv("a,b\n1,2\n3,4\n", name)
    assert rows_and_values(path, "b", 10) == [(1, "2"), (2, "4")]


def test_every_csv_column_is_text_so_ids_keep_their_digits(write_csv):
    path = write_csv("id,price\n1234567890123456789,2.50\n0042,3\n")
    chunk = next(read_frames(resolve_sources([path])))
    assert chunk.table.column("id").to_pylist() == ["1234567890123456789", "0042"]
    assert chunk.table.column("price").to_pylist() == ["2.50", "3"]


def test_malformed_lines_are_reported_with_their_row_and_do_not_shift_others(write_csv):
    path = write_csv('col,other\na,1\nb\nc,3\n"multi\nline",4\nd,5,extra\ne,6\n')
    chunks = list(read_frames(resolve_sources([path]), chunk_rows=2))
    rows = [
        (r, v)
        for c in chunks
        for r, v in zip(c.rows.to_pylist(), c.table.column("col").to_pylist(), strict=True)
    ]
    malformed = [m for c in chunks for m in c.malformed]
    assert rows == [(1, "a"), (3, "c"), (4, "multi\nline"), (6, "e")]
    assert [m[0] for m in malformed] == [2, 5]
    assert "expected 2 columns, found 1" in malformed[0][1]


def test_parquet_row_numbers_across_row_groups(write_parquet):
    path = write_parquet(pa.table({"x": list(range(25))}), row_group_size=4)
    got = rows_and_values(path, "x", 6)
    assert got == [(i + 1, i) for i in range(25)]


def test_folders_and_globs_expand_in_sorted_order(tmp_path, write_csv):
    (tmp_path / "sub").mkdir()
    write_csv("a\n1\n", "sub/b.csv")
    write_csv("a\n2\n", "sub/a.csv")
    (tmp_path / "sub" / "notes.md").write_text("ignored")
    names = [s.name for s in resolve_sources([tmp_path / "sub"])]
    assert names == [str(tmp_path / "sub" / "a.csv"), str(tmp_path / "sub" / "b.csv")]
    assert [s.name for s in resolve_sources([str(tmp_path / "sub" / "*.csv")])] == names


def test_dataframe_with_mixed_object_column_becomes_text():
    frame = pd.DataFrame({"id": [17850, "A-1", None], "n": [1, 2, 3]})
    (source,) = resolve_sources([frame])
    chunk = next(read_frames([source]))
    assert chunk.table.column("id").to_pylist() == ["17850", "A-1", None]
    assert chunk.rows.to_pylist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no such file or folder"),
        (lambda p: p.write_text(""), "the file is empty"),
        (lambda p: p.write_text("a,a\n1,2\n"), "the header names 'a' more than once"),
    ],
)
def test_unreadable_input_is_an_input_error_naming_the_file(tmp_path, setup, message):
    path = tmp_path / "in.csv"
    setup(path)
    with pytest.raises(InputError, match=message) as info:
        resolve_sources([path])
    assert str(path) in str(info.value)


def test_corrupt_parquet_is_an_input_error(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        resolve_sources([path])


def test_text_that_is_not_utf8_is_an_input_error_wherever_it_is(write_csv):
    header, row = "ts,event,sku,user_id\n", "2024-05-02T14:38:24Z,view,S1,u1\n"
    early = write_csv(header + row, "early.csv")
    with open(early, "ab") as fh:
        fh.write(b"2024-05-02T14:38:25Z,view,S2,\xff\xfe\n")  # Latin-1, in the first block
    with pytest.raises(InputError) as info:
        list(read_frames(resolve_sources([early])))
    assert str(info.value) == (
        f"{early}: not valid utf-8 text at byte offset 82 (line 3): bytes ff (invalid start "
        "byte); if the file is text in another encoding, give it with --encoding (e.g. "
        "--encoding cp1252 for Excel on Windows, --encoding utf-16)"
    )
    late = write_csv(header + row * 40_000, "late.csv")  # past the first 1 MiB block
    with open(late, "ab") as fh:
        fh.write(b"2024-05-02T14:38:25Z,view,S2,\xff\xfe\n")
    with pytest.raises(InputError, match=f"^{late}: not valid utf-8 text at byte offset"):
        list(read_frames(resolve_sources([late])))
