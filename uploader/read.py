"""Read stage: turn the inputs into a stream of bounded chunks.

Every chunk carries the source-file row number of each of its rows (1-based data rows,
header excluded), so that rejects point at the right line whatever the chunk size. CSV
columns are all read as text: nothing goes through float on the way in, and the mapping
stage decides what each value means.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from uploader.errors import InputError
from uploader.inputs import CSV_BLOCK_BYTES, Source, delimiter_of, open_text, resolve_sources

__all__ = ["CHUNK_ROWS", "Chunk", "Source", "read_frames", "resolve_sources"]

# Rows per chunk: per-chunk overhead is amortised by then (measured: 16k and 64k rows take the
# same time), and the working set of a chunk stays near 150 MB rather than 300 MB at 64k.
CHUNK_ROWS = 16_384
# Longest part of a malformed CSV line quoted back in a reject.
RAW_LINE_PREVIEW = 200


@dataclass(frozen=True)
class Chunk:
    """A slice of one source: its rows as read, and their row numbers in that source."""

    source: Source
    table: pa.Table
    rows: pa.Array  # int64, 1-based data-row numbers in the source
    malformed: tuple[tuple[int, str], ...] = ()  # CSV lines that could not be parsed: (row, why)
    bytes_done: int | None = None  # how far into the file (on disk) reading has come
    skipped: int = 0  # rows not read: a Parquet row group dealt with in an earlier run


# Rows already dealt with in an earlier run, per source: a Parquet row group whose rows are
# all among them is not read again.
DoneRows = Callable[[Source], Callable[[np.ndarray], np.ndarray] | None]


def read_frames(
    sources: Sequence[Source], chunk_rows: int = CHUNK_ROWS, done: DoneRows | None = None
) -> Iterator[Chunk]:
    """Yield the chunks of every source in order."""
    for source in sources:
        if source.format == "csv":
            yield from _read_csv(source, chunk_rows)
        elif source.format == "parquet":
            yield from _read_parquet(source, chunk_rows, done(source) if done else None)
        else:
            assert source.table is not None
            yield from _read_table(source, chunk_rows)


def _read_csv(source: Source, chunk_rows: int) -> Iterator[Chunk]:
    bad: list[tuple[int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        # With use_threads=False pyarrow numbers records from 1 at the header line.
        number = (row.number or 0) - 1
        text = row.text if len(row.text) <= RAW_LINE_PREVIEW else row.text[:RAW_LINE_PREVIEW] + "…"
        bad.append(
            (number, f"expected {row.expected_columns} columns, found {row.actual_columns}: {text}")
        )
        return "skip"

    stream, raw = open_text(source)
    try:
        try:  # opening parses the first block: its errors come from here, not from reading
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
                parse_options=pacsv.ParseOptions(
                    delimiter=delimiter_of(source.name),
                    newlines_in_values=True,
                    invalid_row_handler=on_invalid,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in _file_columns(source)},
                    strings_can_be_null=False,
                ),
            )
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{source.name}: cannot read ({exc})") from exc
        numbering = _RowNumbering()
        consumed = 0  # bytes of text parsed so far (the reader reads megabytes ahead)
        previous: Chunk | None = None  # held back one batch: the last one ends the file
        for batch in _rebatch(_batches_or_input_error(reader, source.name), chunk_rows):
            skipped = numbering.note_skipped(bad)
            bad.clear()
            rows = numbering.take(batch.num_rows)
            table = _with_partitions(pa.Table.from_batches([batch]), source)
            consumed += _text_bytes(batch)
            position = _position(consumed, stream, raw)
            if previous is not None:
                yield previous
            previous = Chunk(source, table, rows, tuple(skipped), position)
        if previous is not None:
            yield replace(previous, bytes_done=source.size)
        if bad:  # malformed lines after the last good row
            yield Chunk(
                source,
                _with_partitions(
                    pa.table({n: pa.array([], pa.string()) for n in _file_columns(source)}),
                    source,
                ),
                pa.array([], pa.int64()),
                tuple(bad),
                source.size,
            )
    finally:
        stream.close()
        raw.close()


def _text_bytes(batch: pa.RecordBatch) -> int:
    """About the bytes of CSV text these rows took: their values, a separator after each."""
    values = sum(int(pc.sum(pc.binary_length(c)).as_py() or 0) for c in batch.columns)
    return int(values + batch.num_rows * batch.num_columns)


def _position(consumed: int, stream: pa.NativeFile, raw: pa.NativeFile) -> int:
    """How far into the file as stored the parsed rows reach: the text consumed, scaled to
    the stored bytes when the file is compressed (the reader's own position runs ahead)."""
    stored = int(raw.tell())
    if stream is raw:
        return min(consumed, stored)
    try:
        text_read = int(stream.tell())
    except (OSError, pa.ArrowNotImplementedError):  # some codecs cannot say
        return stored
    return min(stored, round(stored * consumed / text_read)) if text_read else 0


class _RowNumbering:
    """Numbers parsed rows, leaving out the numbers of lines the parser skipped as malformed."""

    def __init__(self) -> None:
        self.next = 1
        self.skipped: list[int] = []

    def note_skipped(self, bad: list[tuple[int, str]]) -> list[tuple[int, str]]:
        self.skipped.extend(number for number, _ in bad)
        self.skipped.sort()
        return list(bad)

    def take(self, n: int) -> pa.Array:
        numbers: list[int] = []
        start = self.next
        if not self.skipped or self.skipped[0] >= start + n:
            self.next = start + n
            return pa.array(range(start, start + n), pa.int64())
        current = start
        while len(numbers) < n:
            while self.skipped and self.skipped[0] <= current:
                if self.skipped.pop(0) == current:
                    current += 1
            numbers.append(current)
            current += 1
        self.next = current
        return pa.array(numbers, pa.int64())


def _batches_or_input_error(reader: Any, name: str) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError, EOFError) as exc:
            raise InputError(f"{name}: cannot read past this point ({exc})") from exc
        yield batch


def _rebatch(batches: Iterator[pa.RecordBatch], chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """Cut or merge parser batches into chunks of at most chunk_rows rows."""
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    for batch in batches:
        pending.append(batch)
        pending_rows += batch.num_rows
        while pending_rows >= chunk_rows:
            merged = pa.Table.from_batches(pending).combine_chunks().to_batches()
            whole = merged[0] if merged else batch.slice(0, 0)
            yield whole.slice(0, chunk_rows)
            rest = whole.slice(chunk_rows)
            pending, pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
    if pending_rows:
        merged = pa.Table.from_batches(pending).combine_chunks().to_batches()
        yield merged[0]


def _read_parquet(
    source: Source, chunk_rows: int, is_done: Callable[[np.ndarray], np.ndarray] | None
) -> Iterator[Chunk]:
    handle = source.open_file()
    try:
        parquet = pq.ParquetFile(handle)
        total = max(parquet.metadata.num_rows, 1)
        start = 1
        for group in range(parquet.metadata.num_row_groups):
            size = parquet.metadata.row_group(group).num_rows
            first, start = start, start + size
            position = (source.size or 0) * (start - 1) // total
            if is_done is not None and is_done(np.arange(first, start)).all():
                yield Chunk(source, _empty(source), _NO_ROWS, bytes_done=position, skipped=size)
                continue
            for batch in parquet.iter_batches(batch_size=chunk_rows, row_groups=[group]):
                rows = pa.array(range(first, first + batch.num_rows), pa.int64())
                first += batch.num_rows
                table = _with_partitions(pa.Table.from_batches([batch]), source)
                yield Chunk(source, table, rows, bytes_done=position)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{source.name}: cannot read Parquet data ({exc})") from exc
    finally:
        handle.close()


def _read_table(source: Source, chunk_rows: int) -> Iterator[Chunk]:
    assert source.table is not None
    start = 1
    for batch in source.table.to_batches(max_chunksize=chunk_rows):
        rows = pa.array(range(start, start + batch.num_rows), pa.int64())
        start += batch.num_rows
        yield Chunk(source, pa.Table.from_batches([batch]), rows)


_NO_ROWS = pa.array([], pa.int64())


def _empty(source: Source) -> pa.Table:
    return pa.table({name: pa.array([], pa.string()) for name in source.columns})


def _file_columns(source: Source) -> list[str]:
    partition_keys = {key for key, _ in source.partitions}
    return [c for c in source.columns if c not in partition_keys]


def _with_partitions(table: pa.Table, source: Source) -> pa.Table:
    """Add the source's key=value folder names as text columns (a file column of the same
    name wins)."""
    for key, value in source.partitions:
        if key not in table.column_names:
            table = table.append_column(key, pa.array([value] * table.num_rows, pa.string()))
    return table
