"""Run-wide memory of event ids, in bounded space: 10 bytes a key, not a Python object.

A 10-million-row backfill must still collapse exact duplicates across the whole upload
and refuse a given eventId used twice, without holding 10 million Python objects. Keys are
80 bits of an id's SHA-256 (a false match needs an 80-bit collision: about 1 in 10^10 for
10 million keys), kept in sorted numpy runs that are looked up with binary search.
"""

from __future__ import annotations

import numpy as np

# Keys per sorted run before a new run starts: merging stays cheap (a few MB), and a lookup
# costs one binary search per run (5 runs for 10 million keys).
RUN_KEYS = 1 << 20
# Bytes of a key: a 64-bit hi and a 16-bit lo half.
KEY_BYTES = 10
# Value stored for a key when the caller gives none.
NO_VALUE = -1


class KeySet:
    """A set of (hi: uint64, lo: uint16) keys, optionally each with an int64 value (e.g.
    where it was first seen: 8 more bytes a key). Keys are only ever added."""

    def __init__(self, with_values: bool = False) -> None:
        self.with_values = with_values
        self.runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(len(hi) for hi, _, _ in self.runs)

    def lookup(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """The stored value of each key (NO_VALUE in a set without values), or
        NO_VALUE - 1 where the key is absent."""
        found = np.full(len(hi), NO_VALUE - 1, dtype=np.int64)
        for run_hi, run_lo, run_val in self.runs:
            at = np.searchsorted(run_hi, hi)
            inside = at < len(run_hi)
            at_clipped = np.where(inside, at, 0)
            same_hi = inside & (run_hi[at_clipped] == hi)
            for i in np.flatnonzero(same_hi).tolist():
                j = int(at_clipped[i])
                while j < len(run_hi) and run_hi[j] == hi[i]:  # equal hi: almost never twice
                    if run_lo[j] == lo[i]:
                        found[i] = run_val[j] if self.with_values else NO_VALUE
                        break
                    j += 1
        return found

    def add(self, hi: np.ndarray, lo: np.ndarray, values: np.ndarray | None = None) -> None:
        """Add keys known to be absent and distinct from each other."""
        if not len(hi):
            return
        order = np.argsort(hi, kind="stable")
        stored = values if self.with_values and values is not None else np.empty(0, np.int64)
        new_hi, new_lo = hi[order], lo[order]
        new_val = stored[order] if self.with_values else stored
        if self.runs and len(self.runs[-1][0]) + len(hi) <= RUN_KEYS:
            run_hi, run_lo, run_val = self.runs.pop()
            # A linear merge of two sorted runs (lo order does not matter: lookups scan
            # every entry of an equal hi).
            at = np.searchsorted(run_hi, new_hi, side="right")
            new_hi = np.insert(run_hi, at, new_hi)
            new_lo = np.insert(run_lo, at, new_lo)
            new_val = np.insert(run_val, at, new_val) if self.with_values else run_val
        self.runs.append((new_hi, new_lo, new_val))


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
    order = np.lexsort((np.arange(len(hi)), lo, hi))
    sorted_hi, sorted_lo = hi[order], lo[order]
    starts = np.ones(len(hi), dtype=bool)
    starts[1:] = (sorted_hi[1:] != sorted_hi[:-1]) | (sorted_lo[1:] != sorted_lo[:-1])
    group_first = order[np.maximum.accumulate(np.where(starts, np.arange(len(hi)), 0))]
    first = np.empty(len(hi), dtype=np.int64)
    first[order] = group_first
    return first
