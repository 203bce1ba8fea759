"""ReadMeter: how far reading has come, and totals only where every input knows its own."""

from __future__ import annotations

from uploader.inputs import Source
from uploader.progress import ReadMeter


def source(name: str, size: int | None, rows: int | None) -> Source:
    return Source(name, "csv", ("a",), size=size, rows=rows)


def test_totals_add_up_when_every_input_knows_its_size_and_rows():
    meter = ReadMeter([source("a", 100, 10), source("b", 50, 4)])
    assert (meter.bytes_total, meter.rows_total) == (150, 14)


def test_one_input_without_a_size_leaves_the_byte_total_unknown():
    meter = ReadMeter([source("a", 100, 10), source("<DataFrame>", None, 4)])
    assert (meter.bytes_total, meter.rows_total) == (None, 14)


def test_one_input_without_a_row_count_leaves_the_row_total_unknown():
    meter = ReadMeter([source("a.csv", 100, None), source("b.parquet", 50, 4)])
    assert (meter.bytes_total, meter.rows_total) == (150, None)


def test_bytes_read_is_the_latest_position_in_each_input():
    meter = ReadMeter([source("a", 100, None), source("b", 50, None)])
    assert meter.bytes_read == 0
    meter.note("a", 40)
    meter.note("a", 100)  # a position, not an increment
    meter.note("b", 20)
    assert meter.bytes_read == 120
    meter.note("<DataFrame>", None)  # no position on disk: counts nothing
    assert meter.bytes_read == 120
