"""Read stage: turn paths, DataFrames and Arrow tables into a stream of bounded chunks.

Every chunk carries the source-file row number of each of its rows (1-based data rows,
header excluded), so that rejects point at the right line whatever the chunk size. CSV
columns are all read as text: nothing goes through float on the way in, and the mapping
stage decides what each value means.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from uploader.errors import InputError

# Rows per chunk: big enough to amortise per-chunk overhead, small enough to keep memory flat.
CHUNK_ROWS = 65_536
# CSV bytes parsed per block; pyarrow's default (1 MiB) is a good fit for our chunk size.
CSV_BLOCK_BYTES = 1 << 20
# Longest part of a malformed CSV line quoted back in a reject.
RAW_LINE_PREVIEW = 200

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".tsv", ".txt")
COMPRESSION_BY_SUFFIX = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")


@dataclass(frozen=True)
class Source:
    """One input: a file on disk or an in-memory table (a DataFrame or an Arrow table)."""

    name: str  # what rejects and reports call it: the path, or "<DataFrame>"
    format: str  # "csv", "parquet" or "table"
    columns: tuple[str, ...]
    size: int | None = None  # bytes on disk
    mtime_ns: int | None = None
    rows: int | None = None  # known up front for Parquet and tables
    table: pa.Table | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Chunk:
    """A slice of one source: its rows as read, and their row numbers in that source."""

    source: Source
    table: pa.Table
    rows: pa.Array  # int64, 1-based data-row numbers in the source
    malformed: tuple[tuple[int, str], ...] = ()  # CSV lines that could not be parsed: (row, why)
    bytes_done: int | None = None  # how far into the file (on disk) reading has come


def resolve_sources(inputs: Sequence[Any]) -> list[Source]:
    """Expand paths, directories and globs; open each input far enough to know its columns."""
    sources: list[Source] = []
    for item in inputs:
        if isinstance(item, pa.Table):
            sources.append(_table_source(item, "<Arrow table>"))
        elif _is_dataframe(item):
            sources.append(_table_source(_dataframe_to_table(item), "<DataFrame>"))
        else:
            sources.extend(_file_source(path) for path in _expand(os.fspath(item)))
    sources = _without_repeats(sources)
    if not sources:
        raise InputError("no input given: name one or more CSV or Parquet files or folders")
    return sources


def _without_repeats(sources: list[Source]) -> list[Source]:
    """A file named twice (a path and a glob that matches it) is read once."""
    seen: set[str] = set()
    unique = []
    for source in sources:
        if source.format != "table":
            if source.name in seen:
                continue
            seen.add(source.name)
        unique.append(source)
    return unique


def read_frames(sources: Sequence[Source], chunk_rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """Yield the chunks of every source in order."""
    for source in sources:
        if source.format == "csv":
            yield from _read_csv(source, chunk_rows)
        elif source.format == "parquet":
            yield from _read_parquet(source, chunk_rows)
        else:
            assert source.table is not None
            yield from _read_table(source, chunk_rows)


def _expand(path: str) -> list[str]:
    if any(ch in path for ch in "*?["):
        matches = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not matches:
            raise InputError(f"{path}: no file matches this pattern")
        return [p for p in matches if _format_of(p) is not None] or matches
    if os.path.isdir(path):
        found = sorted(
            str(p) for p in Path(path).rglob("*") if p.is_file() and _format_of(str(p)) is not None
        )
        if not found:
            raise InputError(f"{path}: folder holds no .csv or .parquet file")
        return found
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or folder")
    return [path]


def _format_of(path: str) -> str | None:
    lower = path.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    stem = lower
    for suffix in COMPRESSION_BY_SUFFIX:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    if stem.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    return None


def _file_source(path: str) -> Source:
    fmt = _format_of(path)
    if fmt is None:
        fmt = "parquet" if _has_parquet_magic(path) else "csv"
    stat = os.stat(path)
    if fmt == "parquet":
        try:
            meta = pq.ParquetFile(path).metadata
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
        columns = tuple(meta.schema.to_arrow_schema().names)
        return Source(path, "parquet", columns, stat.st_size, stat.st_mtime_ns, meta.num_rows)
    return Source(path, "csv", _csv_header(path), stat.st_size, stat.st_mtime_ns)


def _has_parquet_magic(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from exc


def _open_stream(path: str) -> tuple[pa.NativeFile, pa.NativeFile]:
    """(stream to parse, underlying file): the file's position is the progress in bytes."""
    compression = next(
        (codec for suffix, codec in COMPRESSION_BY_SUFFIX.items() if path.lower().endswith(suffix)),
        None,
    )
    try:
        raw = pa.OSFile(path, "rb")
        if compression is None:
            return raw, raw
        return pa.CompressedInputStream(raw, compression), raw
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: cannot open ({exc})") from exc


def _csv_header(path: str) -> tuple[str, ...]:
    try:
        stream, raw = _open_stream(path)
        with stream, raw:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
                parse_options=pacsv.ParseOptions(
                    delimiter=_delimiter(path),
                    newlines_in_values=True,
                    invalid_row_handler=lambda row: "skip",  # reported when the rows are read
                ),
            )
            names = tuple(reader.schema.names)
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            raise InputError(f"{path}: the file is empty (no header line)") from exc
        raise InputError(f"{path}: not a readable CSV file ({exc})") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from exc
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(
            f"{path}: the header names {', '.join(map(repr, duplicates))} more than once; "
            "rename the columns so that each name is unique"
        )
    return names


def _delimiter(path: str) -> str:
    return "\t" if ".tsv" in path.lower() else ","


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

    stream, raw = _open_stream(source.name)
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
            parse_options=pacsv.ParseOptions(
                delimiter=_delimiter(source.name),
                newlines_in_values=True,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in source.columns},
                strings_can_be_null=False,
            ),
        )
        numbering = _RowNumbering()
        for batch in _rebatch(_batches_or_input_error(reader, source.name), chunk_rows):
            skipped = numbering.note_skipped(bad)
            bad.clear()
            rows = numbering.take(batch.num_rows)
            yield Chunk(source, pa.Table.from_batches([batch]), rows, tuple(skipped), raw.tell())
        if bad:  # malformed lines after the last good row
            yield Chunk(
                source,
                pa.table({n: pa.array([], pa.string()) for n in source.columns}),
                pa.array([], pa.int64()),
                tuple(bad),
                source.size,
            )
    finally:
        stream.close()
        raw.close()


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


def _read_parquet(source: Source, chunk_rows: int) -> Iterator[Chunk]:
    try:
        parquet = pq.ParquetFile(source.name)
        start = 1
        total = max(parquet.metadata.num_rows, 1)
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            rows = pa.array(range(start, start + batch.num_rows), pa.int64())
            start += batch.num_rows
            done = (source.size or 0) * (start - 1) // total
            yield Chunk(source, pa.Table.from_batches([batch]), rows, bytes_done=done)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{source.name}: cannot read Parquet data ({exc})") from exc


def _read_table(source: Source, chunk_rows: int) -> Iterator[Chunk]:
    assert source.table is not None
    start = 1
    for batch in source.table.to_batches(max_chunksize=chunk_rows):
        rows = pa.array(range(start, start + batch.num_rows), pa.int64())
        start += batch.num_rows
        yield Chunk(source, pa.Table.from_batches([batch]), rows)


def _table_source(table: pa.Table, name: str) -> Source:
    return Source(name, "table", tuple(table.column_names), rows=table.num_rows, table=table)


def _is_dataframe(obj: object) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "columns")


def _dataframe_to_table(frame: Any) -> pa.Table:
    """Arrow from pandas; object columns that hold mixed types become text, not an error."""
    frame = frame.reset_index(drop=True)
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        raise InputError("the DataFrame has duplicate column names; make them unique")
    frame.columns = names
    arrays = []
    for name in names:
        column = frame[name]
        try:
            arrays.append(pa.Array.from_pandas(column))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            texts = [None if _is_missing(v) else str(v) for v in column.tolist()]
            arrays.append(pa.array(texts, pa.string()))
    return pa.Table.from_arrays(arrays, names=names)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)
