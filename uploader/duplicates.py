"""Run-wide memory of event ids, in bounded space: 10 bytes a key, and past a budget on disk.

A backfill must collapse exact duplicates across the whole upload and refuse a given
eventId used twice, without holding a Python object per event, and without its memory
growing with the input. Keys are 80 bits of an id's SHA-256 (a 64-bit `hi` and a 16-bit
`lo`; a false match needs an 80-bit collision: about 1 in 10^10 for 10 million keys).

- Sorted runs in memory, merged size-tiered (two runs of similar size become one), so a
  lookup costs one binary search per run and there are about log2(keys / chunk) runs.
- A filter (Bloom: FILTER_PROBES bits per key, from the hash's top bits) answers almost
  every lookup of a new key without touching the runs: with F bits and N keys, about
  (1 - e^(-3N/F))^3 of them get through (0.1% at 10M keys in 32 MB).
- Past `memory_keys` keys, the largest memory run moves to a file (sorted, with every
  SPILL_BLOCK-th key kept in memory as an index): memory then stays near
  memory_keys x 10 bytes + the filter, whatever the input's size. A lookup that gets past
  the filter reads one block of each file; when there are more than MAX_SPILLED files they
  are merged into one, in bounded memory. Past a few hundred million keys the filter fills
  and most lookups read the disk: inputs of that size are the Spark engine's.

The runs themselves, in memory and on disk, are in keyruns.py.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref

import numpy as np

from uploader.keyruns import MERGE_KEYS, NO_VALUE, Run, SpilledRun, positions

__all__ = ["NO_VALUE", "KeySet", "first_occurrences", "split_key_blob", "split_keys"]

# Keys held in memory before the largest run moves to disk: 2M keys are 20 MB (values, for
# given eventIds and counts, 8 bytes more each). Documented in the README as the budget.
MEMORY_KEYS = 2 << 20
# The filter starts small and grows x4 while keys exceed a sixteenth of its bits, up to
# 2**28 bits (32 MB). Each key sets FILTER_PROBES bits (double hashing of the hash's top
# 56 bits): at 16 bits a key 0.5% of new keys get past it, at 10M keys 0.1%.
FILTER_BITS_FIRST = 1 << 22
FILTER_BITS_MAX = 1 << 28
FILTER_LOAD = 16
FILTER_PROBES = 3
# Spilled runs before they are merged into one: a lookup reads a block from each.
MAX_SPILLED = 8
# Keys whose filter bits are set at a time (when the filter grows, every key's are set again).
MARK_KEYS = 1 << 16
# Bytes of a key: a 64-bit hi and a 16-bit lo half.
KEY_BYTES = 10
_ABSENT = NO_VALUE - 1


class KeySet:
    """A set of (hi: uint64, lo: uint16) keys, optionally each with an int64 value (e.g.
    where it was first seen). Keys are only ever added. `close()` removes spill files."""

    def __init__(
        self,
        with_values: bool = False,
        *,
        memory_keys: int = MEMORY_KEYS,
        spill_dir: str | None = None,
        filter_bits: int = FILTER_BITS_FIRST,
        max_spilled: int = MAX_SPILLED,
    ) -> None:
        self.with_values = with_values
        self.memory_keys = memory_keys
        self.max_spilled = max_spilled
        self.runs: list[Run] = []  # in memory, oldest (largest) first
        self.spilled: list[SpilledRun] = []
        self._spill_parent = spill_dir
        self._spill_dir: str | None = None
        self._bits = filter_bits
        self._filter = np.zeros(filter_bits // 8, dtype=np.uint8)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def in_memory(self) -> int:
        return sum(len(run) for run in self.runs)

    def lookup(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """The stored value of each key (NO_VALUE in a set without values), or
        NO_VALUE - 1 where the key is absent."""
        found = np.full(len(hi), _ABSENT, dtype=np.int64)
        if not self._count or not len(hi):
            return found
        maybe = np.flatnonzero(self._test(hi))
        if not len(maybe):
            return found
        order = maybe[np.argsort(hi[maybe], kind="stable")]  # sorted queries search faster
        q_hi, q_lo = hi[order], lo[order]
        result = np.full(len(order), _ABSENT, dtype=np.int64)
        for run in self.runs:
            run.lookup(q_hi, q_lo, result)
        for spilled in self.spilled:
            spilled.lookup(q_hi, q_lo, result)
        found[order] = result
        return found

    def add(self, hi: np.ndarray, lo: np.ndarray, values: np.ndarray | None = None) -> None:
        """Add keys known to be absent and distinct from each other."""
        if not len(hi):
            return
        order = np.argsort(hi, kind="stable")
        stored = values[order] if self.with_values and values is not None else None
        if self.with_values and stored is None:
            stored = np.full(len(hi), NO_VALUE, dtype=np.int64)
        self.runs.append(Run(hi[order], lo[order].astype(np.uint16), stored))
        self._count += len(hi)
        while len(self.runs) >= 2 and len(self.runs[-2]) <= 2 * len(self.runs[-1]):
            newer = self.runs.pop()
            self.runs[-1] = self.runs[-1].merged(newer)
        if self._count > self._bits // FILTER_LOAD and self._bits < FILTER_BITS_MAX:
            self._grow_filter()
        else:
            self._mark(hi)
        while self.in_memory > self.memory_keys and self.runs:
            self._spill()

    def increment(self, hi: np.ndarray, lo: np.ndarray, amounts: np.ndarray) -> np.ndarray:
        """Add `amounts` to the values of the keys present (distinct from each other);
        returns which were. A count per key in bounded memory: absent keys are then
        `add`ed with their amounts."""
        assert self.with_values, "increment needs a KeySet with values"
        found = np.zeros(len(hi), dtype=bool)
        if not self._count or not len(hi):
            return found
        maybe = np.flatnonzero(self._test(hi))
        for run in self.runs:
            at = positions(run.hi, run.lo, hi[maybe], lo[maybe])
            hit = at >= 0
            assert run.values is not None
            run.values[at[hit]] += amounts[maybe[hit]]
            found[maybe[hit]] = True
        for spilled in self.spilled:
            rest = maybe[~found[maybe]]
            found[rest] = spilled.increment(hi[rest], lo[rest], amounts[rest])
        return found

    def close(self) -> None:
        for spilled in self.spilled:
            spilled.close()
        self.spilled = []
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)
            self._spill_dir = None

    # the filter
    def _slots(self, hi: np.ndarray) -> list[np.ndarray]:
        """The filter's bit of each key for each probe: h1 + i * h2 modulo its size, h1
        and h2 from disjoint top bits of hi (at most 28 each: 56 of the 64)."""
        width = self._bits.bit_length() - 1
        hi = hi.astype(np.uint64, copy=False)
        h1 = (hi >> np.uint64(64 - width)).astype(np.int64)
        h2 = ((hi >> np.uint64(64 - 2 * width)) & np.uint64(self._bits - 1)).astype(np.int64)
        mask = self._bits - 1
        return [(h1 + i * (h2 | 1)) & mask for i in range(FILTER_PROBES)]

    def _test(self, hi: np.ndarray) -> np.ndarray:
        found = np.ones(len(hi), dtype=bool)
        for slots in self._slots(hi):
            found &= ((self._filter[slots >> 3] >> (slots & 7).astype(np.uint8)) & 1).astype(bool)
        return found

    def _mark(self, hi: np.ndarray) -> None:
        for start in range(0, len(hi), MARK_KEYS):  # bounded temporaries for a whole run
            for slots in self._slots(hi[start : start + MARK_KEYS]):
                np.bitwise_or.at(self._filter, slots >> 3, (1 << (slots & 7)).astype(np.uint8))

    def _grow_filter(self) -> None:
        while self._count > self._bits // FILTER_LOAD and self._bits < FILTER_BITS_MAX:
            self._bits *= 4
        self._filter = np.zeros(self._bits // 8, dtype=np.uint8)
        for run in self.runs:
            self._mark(run.hi)
        for spilled in self.spilled:
            for hi, _, _ in spilled.chunks(MERGE_KEYS):
                self._mark(hi)

    # disk
    def _spill(self) -> None:
        largest = max(range(len(self.runs)), key=lambda i: len(self.runs[i]))
        run = self.runs.pop(largest)
        self.spilled.append(SpilledRun.write(self._directory(), run))
        if len(self.spilled) > self.max_spilled:
            merged = SpilledRun.merge(self._directory(), self.spilled, self.with_values)
            for old in self.spilled:
                old.close(delete=True)
            self.spilled = [merged]

    def _directory(self) -> str:
        if self._spill_dir is None:
            self._spill_dir = tempfile.mkdtemp(prefix="uploader-keys-", dir=self._spill_parent)
            weakref.finalize(self, shutil.rmtree, self._spill_dir, True)
        return self._spill_dir


def split_keys(digests: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) key halves from the first KEY_BYTES bytes of each digest."""
    return split_key_blob(b"".join(d[:KEY_BYTES] for d in digests))


def split_key_blob(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) key halves of KEY_BYTES-byte keys laid end to end."""
    if not blob:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.uint16)
    raw = np.frombuffer(blob, dtype=np.uint8).reshape(-1, KEY_BYTES)
    hi = raw[:, :8].copy().view(np.uint64).ravel()
    lo = raw[:, 8:KEY_BYTES].copy().view(np.uint16).ravel()
    return hi, lo


def first_occurrences(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """For each key, the index of its first occurrence in these arrays."""
    n = len(hi)
    order = np.argsort(hi, kind="stable")
    sorted_hi = hi[order]
    if not (sorted_hi[1:] == sorted_hi[:-1]).any():  # the usual case: all distinct
        return np.arange(n, dtype=np.int64)
    order = np.lexsort((np.arange(n), lo, hi))
    sorted_hi, sorted_lo = hi[order], lo[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = (sorted_hi[1:] != sorted_hi[:-1]) | (sorted_lo[1:] != sorted_lo[:-1])
    group_first = order[np.maximum.accumulate(np.where(starts, np.arange(n), 0))]
    first = np.empty(n, dtype=np.int64)
    first[order] = group_first
    return first
