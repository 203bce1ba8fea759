"""Read stage: turn the inputs into a stream of bounded chunks.

Every chunk carries the source-file row number of each of its rows (1-based data rows,
header excluded), so that rejects point at the right line whatever the chunk size. CSV
columns are all read as text: nothing goes through float on the way in, and the mapping
stage decides what each value means.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from uploader.dialect import CsvDialect, DecodedText
from uploader.errors import InputError, said
from uploader.inputs import CSV_BLOCK_BYTES, Source, open_text, resolve_sources

__all__ = ["CHUNK_ROWS", "Chunk", "Source", "read_frames", "read_sample", "resolve_sources"]

# Rows per chunk: per-chunk overhead is amortised by then (measured: 16k and 64k rows take the
# same time), and the working set of a chunk stays near 150 MB rather than 300 MB at 64k.
CHUNK_ROWS = 16_384
# Longest part of a malformed CSV line quoted back in a reject.
RAW_LINE_PREVIEW = 200
# Rows looked at to suggest a mapping (diagnosis.py): enough for an id column to show its
# many values and a column of event names its few, read in a blink.
SAMPLE_ROWS = 5_000
# Line breaks inside one malformed row from which its reject asks about an unclosed quote.
RUN_ON_LINES = 10
# A row must fit in one parser block: blocks grow eightfold, up to this, to hold a longer
# one (a 10 MB description reads). A row longer still is almost always a quote never closed.
MAX_CSV_BLOCK_BYTES = 64 << 20


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
) -> Generator[Chunk, None, None]:
    """Yield the chunks of every source in order."""
    for source in sources:
        if source.format == "csv":
            yield from _read_csv(source, chunk_rows)
        elif source.format == "parquet":
            yield from _read_parquet(source, chunk_rows, done(source) if done else None)
        else:
            assert source.table is not None
            yield from _read_table(source, chunk_rows)


def read_sample(source: Source, rows: int = SAMPLE_ROWS) -> pa.Table:
    """The first `rows` rows of one source, as read (partition columns included)."""
    with contextlib.closing(read_frames([source], rows)) as frames:
        for chunk in frames:
            if chunk.table.num_rows:
                return chunk.table
    return pa.table({name: pa.array([], pa.string()) for name in source.columns})


def _read_csv(source: Source, chunk_rows: int) -> Iterator[Chunk]:
    """The chunks of a CSV file. A row longer than a parser block makes pyarrow stop: the
    file is then parsed again with larger blocks, from the start, and what was yielded
    already is left out."""
    block_size = CSV_BLOCK_BYTES
    last_row = 0  # the last good row yielded: every good row up to it was
    yielded_bad: set[int] = set()  # malformed rows yielded
    while True:
        try:
            for chunk in _parse_csv(source, chunk_rows, block_size):
                if block_size > CSV_BLOCK_BYTES:
                    chunk = _unseen(chunk, last_row, yielded_bad)
                    if not chunk.table.num_rows and not chunk.malformed:
                        continue
                if chunk.table.num_rows:
                    last_row = chunk.rows[-1].as_py()
                yielded_bad.update(row for row, _ in chunk.malformed)
                yield chunk
            return
        except _RowTooLong as exc:
            if block_size >= MAX_CSV_BLOCK_BYTES:
                raise InputError(_too_long_message(source.name, exc.after)) from exc.__cause__
            block_size *= 8
        except (pa.ArrowInvalid, OSError) as exc:  # opening: _batches says how far it came
            raise InputError(f"{source.name}: cannot read ({said(exc)})") from exc


class _RowTooLong(Exception):
    """A row does not fit in one parser block; `after` rows were parsed before it."""

    def __init__(self, after: int) -> None:
        super().__init__(after)
        self.after = after


def _parse_csv(source: Source, chunk_rows: int, block_size: int) -> Iterator[Chunk]:
    bad: list[tuple[int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        # With use_threads=False pyarrow numbers records from 1 at the header line.
        number = (row.number or 0) - 1
        text = row.text if len(row.text) <= RAW_LINE_PREVIEW else row.text[:RAW_LINE_PREVIEW] + "…"
        found = f"expected {row.expected_columns} columns, found {row.actual_columns}"
        lines = row.text.count("\n")
        if lines >= RUN_ON_LINES:  # the rest of the file may be in it: say so
            found += f" (its quoted value runs over {lines + 1:,} lines: a quote never closed?)"
        bad.append((number, f"{found}: {text}"))
        return "skip"

    dialect = source.dialect or CsvDialect()
    text, raw = open_text(source, dialect.encoding)
    try:
        columns = {name: pa.string() for name in _file_columns(source)}
        try:
            reader = _open_csv(text, dialect.delimiter, block_size, on_invalid, columns)
        except pa.ArrowInvalid as exc:
            if _row_too_long(exc):
                raise _RowTooLong(0) from exc
            raise
        numbering = _RowNumbering()
        consumed = 0  # bytes of text parsed so far (the reader reads megabytes ahead)
        previous: Chunk | None = None  # held back one batch: the last one ends the file
        for batch in _rebatch(_batches_or_input_error(reader, source), chunk_rows):
            skipped = numbering.note_skipped(bad)
            bad.clear()
            rows = numbering.take(batch.num_rows)
            table = _with_partitions(pa.Table.from_batches([batch]), source)
            consumed += _text_bytes(batch)
            position = _position(consumed, text.consumed, raw)
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
        text.close()
        raw.close()


def _text_bytes(batch: pa.RecordBatch) -> int:
    """About the bytes of CSV text these rows took: their values, a separator after each."""
    values = sum(int(pc.sum(pc.binary_length(c)).as_py() or 0) for c in batch.columns)
    return int(values + batch.num_rows * batch.num_columns)


def _position(consumed: int, text_read: int, raw: pa.NativeFile) -> int:
    """How far into the file as stored the parsed rows reach: the share of the text read so
    far that they took, of the stored bytes read so far (the parser reads ahead of them;
    a compressed file's stored bytes are fewer than its text's)."""
    stored = int(raw.tell())
    return min(stored, round(stored * consumed / text_read)) if text_read else 0


def _unseen(chunk: Chunk, last_row: int, yielded_bad: set[int]) -> Chunk:
    """What of a chunk parsed again was not yielded before."""
    keep = pc.greater(chunk.rows, last_row)
    malformed = tuple(m for m in chunk.malformed if m[0] not in yielded_bad)
    return replace(
        chunk, table=chunk.table.filter(keep), rows=chunk.rows.filter(keep), malformed=malformed
    )


def _open_csv(
    text: DecodedText,
    delimiter: str,
    block_size: int,
    on_invalid: Callable[[pacsv.InvalidRow], str],
    column_types: Mapping[str, pa.DataType] | None = None,
) -> Any:
    """pyarrow's streaming CSV reader over decoded text (every column text, when typed)."""
    return pacsv.open_csv(
        pa.PythonFile(text, mode="r"),
        read_options=pacsv.ReadOptions(block_size=block_size, use_threads=False),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=dict(column_types or {}), strings_can_be_null=False
        ),
    )


def _row_too_long(exc: BaseException) -> bool:
    """pyarrow's way of saying that a row does not fit in one block."""
    text = str(exc)
    return isinstance(exc, pa.ArrowInvalid) and (
        "straddl" in text or "cannot infer number of columns" in text
    )


def _too_long_message(name: str, after_row: int) -> str:
    where = f"after row {after_row:,}" if after_row else "at the start of the file"
    return (
        f"{name}: a row {where} is longer than {_mib(MAX_CSV_BLOCK_BYTES)}. This is "
        'almost always a quote (") opened and never closed, which makes the rest of the '
        "file one field: check the quoting there"
    )


def _mib(size: int) -> str:
    return f"{size >> 20} MiB" if size >= 1 << 20 else f"{size >> 10} KiB"


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


def _batches_or_input_error(reader: Any, source: Source) -> Iterator[pa.RecordBatch]:
    """The parser's batches; what stops it is an InputError saying about how far it came
    (in rows parsed), but for a row too long for a block, which the caller deals with."""
    rows = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            if _row_too_long(exc):
                raise _RowTooLong(rows) from exc
            raise InputError(f"{source.name}: cannot read past row {rows:,} ({said(exc)})") from exc
        except (OSError, EOFError) as exc:
            raise InputError(f"{source.name}: cannot read past row {rows:,} ({said(exc)})") from exc
        rows += batch.num_rows
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
        raise InputError(f"{source.name}: cannot read Parquet data ({said(exc)})") from exc
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
