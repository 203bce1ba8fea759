"""Find the inputs: files, folders and globs on disk or in object storage (s3://, gs://),
DataFrames and Arrow tables, and learn each one's columns before any row is read.

Folder segments written `key=value` (Hive partitioning: `dt=2026-11-26/part-0.parquet`)
become text columns of every row below them, usable in the mapping like any column.
Object storage goes through pyarrow's filesystems, with credentials and endpoint from the
usual environment (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, GOOGLE_APPLICATION_CREDENTIALS…).
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from uploader.dialect import DEFAULT_ENCODING, CsvDialect, CsvOptions, DecodedText, read_header
from uploader.errors import ConfigError, InputError, said

# CSV bytes parsed per block; pyarrow's default (1 MiB) is a good fit for our chunk size.
CSV_BLOCK_BYTES = 1 << 20
COMPRESSION_BY_SUFFIX = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}
PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
REMOTE_SCHEMES = ("s3://", "gs://", "gcs://")
# Bytes read from the head and the tail of a file for its fingerprint: enough to tell two
# exports apart, cheap enough that resuming a finished 10 GB file costs milliseconds.
FINGERPRINT_SAMPLE = 1 << 20
# Hex digits of the content fingerprint that name an unnamed in-memory table: enough to
# tell a notebook's frames apart. A clash only ever causes a "changed" refusal, never a skip
# (skipping compares the whole fingerprint).
NAME_DIGITS = 8
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Source:
    """One input: a file (on disk or in object storage) or an in-memory table."""

    name: str  # what rejects and reports call it: the path, the URI, or "<DataFrame>"
    format: str  # "csv", "parquet" or "table"
    columns: tuple[str, ...]  # the file's columns, then its partition keys
    size: int | None = None  # bytes of the file as stored
    mtime_ns: int | None = None
    rows: int | None = None  # known up front for Parquet and tables
    table: pa.Table | None = field(default=None, repr=False, compare=False)
    partitions: tuple[tuple[str, str], ...] = ()  # key=value folder names added as columns
    filesystem: Any = field(default=None, repr=False, compare=False)  # pyarrow FileSystem
    path: str = ""  # the file's path inside `filesystem`
    dialect: CsvDialect | None = None  # CSV: the encoding and delimiter it is read with
    schema: pa.Schema | None = field(default=None, repr=False, compare=False)  # None: all text

    def open_file(self) -> pa.NativeFile:
        """The stored bytes, random access (the position is the progress in bytes)."""
        try:
            if self.filesystem is None:
                return pa.OSFile(self.path or self.name, "rb")
            return self.filesystem.open_input_file(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{self.name}: cannot open ({said(exc)})") from exc

    @property
    def compression(self) -> str | None:
        lower = self.name.lower()
        return next((c for s, c in COMPRESSION_BY_SUFFIX.items() if lower.endswith(s)), None)


def resolve_inputs(
    given: Any, *, encoding: str = DEFAULT_ENCODING, delimiter: str | None = None
) -> list[Source]:
    """Sources from a path, a DataFrame, an Arrow table, a list of those, or {name: frame}.
    CSV files are read in `encoding` (a byte order mark wins) with `delimiter` (None: the
    one found in each file's header line).

    In-memory tables are named after their content fingerprint ("<DataFrame 1a2b3c4d>"), so
    that the same frame is recognised as the same input by the next run, while a different
    frame is a new input. `{"orders": df}` names it "<orders>": a changed frame under that
    name is then refused like a changed file."""
    if isinstance(given, Mapping):
        items: list[tuple[Any, Any]] = list(given.items())
    elif isinstance(given, list | tuple):
        items = [(None, item) for item in given]
    else:
        items = [(None, given)]
    sources: list[Source] = []
    for name, item in items:
        if isinstance(item, pa.Table) or _is_dataframe(item):
            sources.extend(_named(s, name, item) for s in resolve_sources([item]))
        elif name is not None:
            raise ConfigError(f"{{{name!r}: ...}}: only DataFrames and Arrow tables take a name")
        elif isinstance(item, str | os.PathLike):
            sources.extend(resolve_sources([item], encoding=encoding, delimiter=delimiter))
        else:
            raise InputError(
                f"cannot read a {type(item).__name__}: give a DataFrame, an Arrow table, "
                "a path (file, folder or glob), or a list of them"
            )
    # The same file named twice, or the same frame passed twice, is read once.
    seen: set[str] = set()
    unique = []
    for source in sources:
        if _identity(source) not in seen:
            seen.add(_identity(source))
            unique.append(source)
    return unique or resolve_sources([])  # the reader's own "no input given" message


def _named(source: Source, name: Any, item: Any) -> Source:
    if name is None:
        kind = "Arrow table" if isinstance(item, pa.Table) else "DataFrame"
        name = f"{kind} {fingerprint(source).partition(':')[2][:NAME_DIGITS]}"
    elif not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a frame's name must be a non-empty string; got {name!r}")
    return replace(source, name=f"<{name}>")


def fingerprint(source: Source) -> str:
    """Content fingerprint of an input: size plus head and tail bytes (files), or the
    table's own content hash (in-memory tables)."""
    digest = hashlib.sha256()
    if source.format == "table":
        assert source.table is not None
        import pandas as pd  # only in-memory tables need it

        digest.update(",".join(map(str, source.table.column_names)).encode())
        try:
            frame = source.table.to_pandas()
            hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
        except (TypeError, ValueError, OverflowError, pa.ArrowException):
            # Lists, records (unhashable in pandas), instants pandas cannot hold: Arrow's
            # own bytes. Other tables keep the pandas hash earlier runs recorded.
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, source.table.schema) as writer:
                writer.write_table(source.table.combine_chunks())
            hashes = sink.getvalue().to_pybytes()
        digest.update(hashes)
        return "table:" + digest.hexdigest()
    size = source.size or 0
    digest.update(str(size).encode())
    with source.open_file() as fh:  # local or object storage alike: two ranged reads
        # The file as it was found: not what was appended since (see open_text).
        digest.update(fh.read(min(FINGERPRINT_SAMPLE, size)))
        if size > FINGERPRINT_SAMPLE:
            start = max(FINGERPRINT_SAMPLE, size - FINGERPRINT_SAMPLE)
            fh.seek(start)
            digest.update(fh.read(size - start))
    return "sha256:" + digest.hexdigest()


def resolve_sources(
    inputs: Sequence[Any], *, encoding: str = DEFAULT_ENCODING, delimiter: str | None = None
) -> list[Source]:
    """Expand paths, folders, globs and URIs; open each input far enough to know its columns
    (and, for CSV, its dialect: see resolve_inputs)."""
    given = CsvOptions(encoding, delimiter)
    sources: list[Source] = []
    for item in inputs:
        if isinstance(item, pa.Table):
            sources.append(_table_source(item, "<Arrow table>"))
        elif _is_dataframe(item):
            sources.append(_table_source(_dataframe_to_table(item), "<DataFrame>"))
        else:
            text = os.fspath(item)
            if text.startswith(REMOTE_SCHEMES):
                sources.extend(_remote_sources(text, given))
            else:
                sources.extend(_file_source(path, given) for path in _expand(text))
    sources = _without_repeats(sources)
    if not sources:
        raise InputError("no input given: name one or more CSV or Parquet files or folders")
    return sources


def _without_repeats(sources: list[Source]) -> list[Source]:
    """A file named twice (a path and a glob that matches it, or a symbolic link to it) is
    read once, under the first name met."""
    seen: set[str] = set()
    unique = []
    for source in sources:
        if source.format != "table":
            if _identity(source) in seen:
                continue
            seen.add(_identity(source))
        unique.append(source)
    return unique


def _identity(source: Source) -> str:
    """What makes two inputs the same: a local file's real path, else the name."""
    if source.format == "table" or source.filesystem is not None:
        return source.name
    return os.path.realpath(source.name)


def _expand(path: str) -> list[str]:
    if any(ch in path for ch in _GLOB_CHARS):
        # `**` follows links to folders: through a link that loops, the same files match
        # again at every level, until the path is too long. Each is read once.
        matches = _one_name_each(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not matches:
            raise InputError(f"{path}: no file matches this pattern")
        return [p for p in matches if format_of(p) is not None] or matches
    if os.path.isdir(path):
        found = _one_name_each(p for p in _walk(path) if format_of(p) is not None)
        if not found:
            raise InputError(f"{path}: folder holds no .csv or .parquet file")
        return found
    if not os.path.exists(path):
        if os.path.lexists(path):  # a symbolic link to nothing, or to itself
            try:
                os.stat(path)
            except OSError as exc:
                raise InputError(f"{path}: cannot open ({exc.strerror})") from exc
        raise InputError(f"{path}: no such file or folder")
    return [path]


def _one_name_each(paths: Iterable[str]) -> list[str]:
    """Sorted paths, one name for each file (links name a file again): its own name if it
    is among them, else the first."""
    names: dict[str, str] = {}
    for path in sorted(paths):
        real = os.path.realpath(path)
        if real not in names or real == os.path.abspath(path):
            names[real] = path
    return sorted(names.values())


def _walk(folder: str) -> list[str]:
    """The files below a folder. Links to folders are not followed (a link up the tree
    would loop); a subfolder that cannot be listed stops the run rather than being
    skipped in silence."""

    def fail(exc: OSError) -> None:
        raise InputError(f"{exc.filename}: cannot list this folder ({exc.strerror})") from exc

    return [
        os.path.join(root, name)
        for root, _dirs, names in os.walk(folder, onerror=fail)
        for name in names
        if os.path.isfile(os.path.join(root, name))
    ]


def _remote_sources(uri: str, given: CsvOptions) -> list[Source]:
    scheme = uri[: uri.index("://") + 3]
    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
        if any(ch in path for ch in _GLOB_CHARS):
            base = path[: min(path.find(ch) for ch in _GLOB_CHARS if ch in path)]
            base = base.rsplit("/", 1)[0]
            listing = filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
            infos = [i for i in listing if i.is_file and fnmatch.fnmatchcase(i.path, path)]
        else:
            info = filesystem.get_file_info(path)
            if info.type == pafs.FileType.NotFound:
                raise InputError(f"{uri}: no such object or prefix")
            if info.type == pafs.FileType.Directory:
                listing = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
                infos = [i for i in listing if i.is_file and format_of(i.path) is not None]
            else:
                infos = [info]
    except (pa.ArrowException, OSError) as exc:
        raise InputError(
            f"{uri}: cannot list ({said(exc)}); check the credentials and endpoint in the "
            "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION)"
        ) from exc
    if not infos:
        raise InputError(f"{uri}: no .csv or .parquet object there")
    return [
        _file_source(scheme + info.path, given, filesystem, info.path, info.size, info.mtime_ns)
        for info in sorted(infos, key=lambda i: i.path)
    ]


def format_of(path: str) -> str | None:
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


def partitions_of(name: str) -> tuple[tuple[str, str], ...]:
    """`key=value` folder segments of a path or URI, outermost first."""
    folders = name.replace("\\", "/").split("/")[:-1]
    pairs = [segment.split("=", 1) for segment in folders if "=" in segment]
    return tuple((key, unquote(value)) for key, value in pairs if key)


def _file_source(
    name: str,
    given: CsvOptions,
    filesystem: Any = None,
    path: str = "",
    size: int | None = None,
    mtime_ns: int | None = None,
) -> Source:
    if filesystem is None:
        try:
            stat = os.stat(name)
        except OSError as exc:
            raise InputError(f"{name}: cannot open ({exc.strerror})") from exc
        size, mtime_ns = stat.st_size, stat.st_mtime_ns
        try:  # for the system's own words (pyarrow's are long)
            open(name, "rb").close()
        except OSError as exc:
            raise InputError(f"{name}: cannot open ({exc.strerror})") from exc
    partitions = partitions_of(name)
    probe = Source(name, "", (), size, mtime_ns, partitions=partitions,
                   filesystem=filesystem, path=path or name)  # fmt: skip
    fmt = format_of(name) or ("parquet" if _has_parquet_magic(probe) else "csv")
    rows = None
    dialect = schema = None
    if fmt == "parquet":
        try:
            with probe.open_file() as fh:
                meta = pq.ParquetFile(fh).metadata
                schema = meta.schema.to_arrow_schema()
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{name}: not a readable Parquet file ({said(exc)})") from exc
        columns: tuple[str, ...] = tuple(schema.names)
        rows = meta.num_rows
    else:
        columns, dialect = _csv_header(probe, given)
    _require_unique(columns, name)
    partitions = tuple((k, v) for k, v in partitions if k not in columns)  # a column wins
    columns += tuple(key for key, _ in partitions)
    return Source(name, fmt, columns, size, mtime_ns, rows, partitions=partitions,
                  filesystem=filesystem, path=path or name, dialect=dialect,
                  schema=schema)  # fmt: skip


def _has_parquet_magic(source: Source) -> bool:
    with source.open_file() as fh:
        return bool(fh.read(4) == b"PAR1")


def open_text(source: Source, encoding: str) -> tuple[DecodedText, pa.NativeFile]:
    """(its text as UTF-8, the file as stored): decompressed by the name's suffix, decoded
    from `encoding` (a byte order mark wins). Only the bytes the file had when it was found
    are read: rows appended since are left for the next run."""
    raw = source.open_file()
    stream = raw
    if source.compression is not None:
        try:
            stream = pa.CompressedInputStream(raw, source.compression)
        except (pa.ArrowException, OSError) as exc:
            raw.close()
            raise InputError(f"{source.name}: cannot open ({said(exc)})") from exc
    limit = source.size if source.compression is None else None
    decompressed = source.compression is not None
    return DecodedText(stream, source.name, encoding, limit=limit, decompressed=decompressed), raw


def delimiter_of(name: str) -> str:
    return "\t" if ".tsv" in name.lower() else ","


def _csv_header(source: Source, given: CsvOptions) -> tuple[tuple[str, ...], CsvDialect]:
    """The column names and the dialect (encoding, delimiter) of a CSV file."""
    text, raw = open_text(source, given.encoding)
    with text, raw:
        return read_header(text, given, delimiter_of(source.name))


def _require_unique(names: Sequence[str], source_name: str) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(
            f"{source_name}: the header names {', '.join(map(repr, duplicates))} more than "
            "once; rename the columns so that each name is unique"
        )


def _table_source(table: pa.Table, name: str) -> Source:
    return Source(name, "table", tuple(table.column_names), rows=table.num_rows, table=table,
                  schema=table.schema)  # fmt: skip


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
