"""Writers of hostile input files, made at test time in a temporary folder (no binary
fixtures in the repository): each returns the path it wrote."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HEADER = "ts,event,sku,user_id"
ROW = "2024-05-02T14:38:24Z,view,SKU-{i},u{i}"


def rows(n: int, start: int = 1, newline: str = "\n") -> str:
    return "".join(ROW.format(i=i) + newline for i in range(start, start + n))


def garbage(path: Path, size: int = 4096, seed: int = 7) -> Path:
    """Random bytes, the same every run."""
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def compressed(path: Path, text: str, codec: str) -> Path:
    with pa.output_stream(str(path), compression=codec) as out:
        out.write(text.encode())
    return path


def truncated(path: Path, text: str, codec: str, keep: float = 0.5) -> Path:
    """A compressed file cut short, as by an interrupted copy."""
    compressed(path, text, codec)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def parquet(path: Path, table: pa.Table, **options: object) -> Path:
    pq.write_table(table, path, **options)  # type: ignore[arg-type]
    return path


def damaged_footer(path: Path, table: pa.Table) -> Path:
    """A Parquet file whose footer (the schema and row groups) is overwritten with 0xff,
    its length and magic bytes left intact."""
    parquet(path, table)
    data = path.read_bytes()
    (length,) = struct.unpack("<I", data[-8:-4])
    path.write_bytes(data[: -8 - length] + b"\xff" * length + data[-8:])
    return path


def typed_table(**extra: pa.Array) -> pa.Table:
    """Three valid interactions, plus columns of any type."""
    base = {
        "ts": pa.array([1714660704000] * 3, pa.timestamp("ms", tz="UTC")),
        "event": ["view", "cart", "view"],
        "sku": ["S1", "S2", "S3"],
        "user_id": ["u1", "u2", "u3"],
    }
    return pa.table({**base, **extra})
