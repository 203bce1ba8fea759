"""The runs a KeySet (duplicates.py) is made of: sorted keys in memory, and sorted keys in a
file with a sparse index in memory, merged in bounded memory.

A key is a 64-bit `hi` and a 16-bit `lo`, optionally with an int64 value. Runs are sorted by
`hi` only: keys with the same `hi` sit together, in any order of `lo`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import numpy as np

# Keys a block of a spilled run holds: one read of 5 KB per lookup that gets past the
# filter; the index keeps one key of each block in memory (8 bytes per 512 keys).
SPILL_BLOCK = 512
# Keys merged at a time from each spilled run when they are merged (10 bytes each).
MERGE_KEYS = 1 << 17
# Value stored for a key when the caller gives none.
NO_VALUE = -1


# (hi, lo, values or None) of consecutive keys.
_Keys = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def _slice(keys: _Keys, start: int, stop: int) -> _Keys:
    hi, lo, values = keys
    return hi[start:stop], lo[start:stop], None if values is None else values[start:stop]


class Run:
    """Keys sorted by hi, in memory."""

    def __init__(self, hi: np.ndarray, lo: np.ndarray, values: np.ndarray | None) -> None:
        self.hi, self.lo, self.values = hi, lo, values

    def __len__(self) -> int:
        return len(self.hi)

    def merged(self, other: Run) -> Run:
        at = np.searchsorted(self.hi, other.hi, side="right")
        values = None
        if self.values is not None and other.values is not None:
            values = np.insert(self.values, at, other.values)
        return Run(np.insert(self.hi, at, other.hi), np.insert(self.lo, at, other.lo), values)

    def lookup(self, q_hi: np.ndarray, q_lo: np.ndarray, result: np.ndarray) -> None:
        search(self.hi, self.lo, self.values, q_hi, q_lo, result)


class SpilledRun:
    """Keys sorted by hi in a file: hi (8 bytes each), then lo (2), then values (8)."""

    def __init__(self, path: str, count: int, with_values: bool, index: np.ndarray) -> None:
        self.path, self.count, self.with_values, self.index = path, count, with_values, index
        self.fd = os.open(path, os.O_RDWR)  # values change in place (KeySet.increment)

    @classmethod
    def write(cls, directory: str, run: Run) -> SpilledRun:
        with Writer(directory, run.values is not None) as writer:
            writer.append(run.hi, run.lo, run.values)
        return writer.finish()

    @classmethod
    def merge(cls, directory: str, runs: list[SpilledRun], with_values: bool) -> SpilledRun:
        """One sorted file from several, MERGE_KEYS keys of each at a time."""
        with Writer(directory, with_values) as writer:
            sources = [r.chunks(MERGE_KEYS) for r in runs]
            pending = [next(s, None) for s in sources]
            while any(p is not None for p in pending):
                # Everything up to the smallest last key of the pending chunks is final.
                bound = min(p[0][-1] for p in pending if p is not None)
                parts: list[_Keys] = []
                for k, part in enumerate(pending):
                    if part is None:
                        continue
                    cut = int(np.searchsorted(part[0], bound, side="right"))
                    parts.append(_slice(part, 0, cut))
                    rest = _slice(part, cut, len(part[0]))
                    pending[k] = rest if len(rest[0]) else next(sources[k], None)
                hi = np.concatenate([p[0] for p in parts])
                order = np.argsort(hi, kind="stable")
                lo = np.concatenate([p[1] for p in parts])[order]
                values = None
                if with_values:
                    values = np.concatenate([p[2] for p in parts if p[2] is not None])[order]
                writer.append(hi[order], lo, values)
        return writer.finish()

    def chunks(self, size: int) -> Iterator[_Keys]:
        for start in range(0, self.count, size):
            yield self._read(start, min(start + size, self.count))

    def _read(self, start: int, stop: int) -> _Keys:
        n = stop - start
        hi = np.frombuffer(os.pread(self.fd, 8 * n, 8 * start), dtype=np.uint64)
        lo = np.frombuffer(os.pread(self.fd, 2 * n, 8 * self.count + 2 * start), dtype=np.uint16)
        values = None
        if self.with_values:
            offset = 10 * self.count + 8 * start
            values = np.frombuffer(os.pread(self.fd, 8 * n, offset), dtype=np.int64)
        return hi, lo, values

    def lookup(self, q_hi: np.ndarray, q_lo: np.ndarray, result: np.ndarray) -> None:
        blocks = np.searchsorted(self.index, q_hi, side="right") - 1
        # A key equal to a block's first key may also end the block before: search from it.
        for block in np.unique(np.maximum(blocks, 0)).tolist():
            mine = np.flatnonzero(np.maximum(blocks, 0) == block)
            start = max(block * SPILL_BLOCK - 1, 0)
            hi, lo, values = self._read(start, min((block + 1) * SPILL_BLOCK, self.count))
            part = result[mine]
            search(hi, lo, values, q_hi[mine], q_lo[mine], part)
            result[mine] = part

    def increment(self, q_hi: np.ndarray, q_lo: np.ndarray, amounts: np.ndarray) -> np.ndarray:
        """Add to the values of the query keys found here; returns which were."""
        found = np.zeros(len(q_hi), dtype=bool)
        blocks = np.maximum(np.searchsorted(self.index, q_hi, side="right") - 1, 0)
        for block in np.unique(blocks).tolist():
            mine = np.flatnonzero(blocks == block)
            start = max(block * SPILL_BLOCK - 1, 0)
            hi, lo, values = self._read(start, min((block + 1) * SPILL_BLOCK, self.count))
            assert values is not None
            at = positions(hi, lo, q_hi[mine], q_lo[mine])
            hit = at >= 0
            for j, k in zip(at[hit].tolist(), mine[hit].tolist(), strict=True):
                value = np.array([values[j] + amounts[k]], dtype=np.int64)
                os.pwrite(self.fd, value.tobytes(), 10 * self.count + 8 * (start + j))
            found[mine[hit]] = True
        return found

    def close(self, delete: bool = False) -> None:
        os.close(self.fd)
        if delete:
            os.unlink(self.path)


class Writer:
    """Writes a spilled run's three sections, then builds its index."""

    def __init__(self, directory: str, with_values: bool) -> None:
        handle, self.path = tempfile.mkstemp(dir=directory, suffix=".keys")
        os.close(handle)
        self.with_values = with_values
        self.parts: list[str] = [self.path + ".lo", self.path + ".values"]
        self.files = [open(p, "wb") for p in (self.path, *self.parts)]  # noqa: SIM115
        self.count = 0
        self.index: list[np.ndarray] = []

    def __enter__(self) -> Writer:
        return self

    def append(self, hi: np.ndarray, lo: np.ndarray, values: np.ndarray | None) -> None:
        first = (-self.count) % SPILL_BLOCK  # the first of hi that starts a block
        self.index.append(hi[first::SPILL_BLOCK].copy())  # not a view: it would keep hi
        self.files[0].write(np.ascontiguousarray(hi, np.uint64).tobytes())
        self.files[1].write(np.ascontiguousarray(lo, np.uint16).tobytes())
        if self.with_values and values is not None:
            self.files[2].write(np.ascontiguousarray(values, np.int64).tobytes())
        self.count += len(hi)

    def __exit__(self, *exc: object) -> None:
        for f in self.files:
            f.close()

    def finish(self) -> SpilledRun:
        """Concatenate the sections into the run's one file."""
        with open(self.path, "ab") as out:
            for part in self.parts:
                with open(part, "rb") as section:
                    shutil.copyfileobj(section, out)
                os.unlink(part)
        index = np.concatenate(self.index) if self.index else np.empty(0, np.uint64)
        return SpilledRun(self.path, self.count, self.with_values, index)


def search(
    hi: np.ndarray,
    lo: np.ndarray,
    values: np.ndarray | None,
    q_hi: np.ndarray,
    q_lo: np.ndarray,
    result: np.ndarray,
) -> None:
    """Fill `result` where a query key is among these sorted keys."""
    at = positions(hi, lo, q_hi, q_lo)
    hit = at >= 0
    result[hit] = NO_VALUE if values is None else values[at[hit]]


def positions(hi: np.ndarray, lo: np.ndarray, q_hi: np.ndarray, q_lo: np.ndarray) -> np.ndarray:
    """Where each query key is among these keys (sorted by hi), or -1."""
    out = np.full(len(q_hi), -1, dtype=np.int64)
    at = np.searchsorted(hi, q_hi)
    inside = at < len(hi)
    same_hi = np.zeros(len(q_hi), dtype=bool)
    same_hi[inside] = hi[at[inside]] == q_hi[inside]
    for i in np.flatnonzero(same_hi).tolist():
        j = int(at[i])
        while j < len(hi) and hi[j] == q_hi[i]:  # equal hi: almost never twice
            if lo[j] == q_lo[i]:
                out[i] = j
                break
            j += 1
    return out
