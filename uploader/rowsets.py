"""Row numbers of one input, stored as runs of consecutive numbers: a 10-million-row file
that went out in 20,000 requests costs 20,000 small records, not 10 million."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import orjson

Rows = Sequence[int] | np.ndarray  # row numbers of one file


def encode_runs(rows: Sequence[int] | np.ndarray) -> bytes:
    """Row numbers as sorted [start, end] pairs (inclusive), packed int64."""
    values = np.sort(np.asarray(rows, dtype=np.int64))
    if not len(values):
        return b""
    breaks = np.flatnonzero(np.diff(values) != 1)
    starts = np.concatenate(([values[0]], values[breaks + 1]))
    ends = np.concatenate((values[breaks], [values[-1]]))
    return bytes(np.column_stack((starts, ends)).astype("<i8").tobytes())


def decode_runs(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<i8").reshape(-1, 2)


class RowSet:
    """Rows of one file already dealt with (delivered or refused by the API)."""

    def __init__(self, runs: Iterable[np.ndarray]) -> None:
        pairs = [r for r in runs if len(r)]
        self.runs = np.concatenate(pairs) if pairs else np.empty((0, 2), dtype=np.int64)
        order = np.argsort(self.runs[:, 0], kind="stable")
        self.starts = self.runs[order, 0]
        self.ends = self.runs[order, 1]

    def __len__(self) -> int:
        return int((self.ends - self.starts + 1).sum())

    def contains(self, rows: np.ndarray) -> np.ndarray:
        if not len(self.starts):
            return np.zeros(len(rows), dtype=bool)
        at = np.searchsorted(self.starts, rows, side="right") - 1
        inside = at >= 0
        hit = np.zeros(len(rows), dtype=bool)
        hit[inside] = rows[inside] <= self.ends[at[inside]]
        return hit


def encode_refs(refs: Mapping[int, Rows]) -> bytes:
    return orjson.dumps({str(f): encode_runs(rows).hex() for f, rows in refs.items()})


def decode_refs(blob: bytes) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for f, hexruns in orjson.loads(blob).items():
        rows: list[int] = []
        for start, end in decode_runs(bytes.fromhex(hexruns)).tolist():
            rows.extend(range(start, end + 1))
        out[int(f)] = rows
    return out
