"""Events column-wise: what the id stage hands on, and what batches, the sender and the
ledger pass around. No Python object per event: one block holds a run of events of one
input as arrays, and slicing or taking from it costs a few array operations.

`items` holds each item's JSON with a leading comma (`,{"eventId":…}`), so that a run of
consecutive items becomes a request payload by slicing one buffer and dropping one byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa

from uploader.contract import EVENT_NAMES

# Event name codes: an index into EVENT_NAMES.
NAME_CODES = {name: code for code, name in enumerate(EVENT_NAMES)}
KEY_DTYPE = np.dtype("S10")  # a content key (see duplicates.py); b"" for a given eventId


@dataclass(frozen=True, eq=False)
class Events:
    """Events of one input, in input order."""

    file: str
    codes: np.ndarray  # int8: the event name, as an index into EVENT_NAMES
    items: pa.Array  # binary: ",{...}" per event
    ids: pa.Array  # string: the eventId of each event
    rows: np.ndarray  # int64: 1-based data rows in the input
    keys: np.ndarray  # KEY_DTYPE: content keys of derived ids, b"" for given ones

    def __len__(self) -> int:
        return len(self.rows)

    def slice(self, start: int, stop: int) -> Events:
        return Events(
            self.file,
            self.codes[start:stop],
            self.items.slice(start, stop - start),
            self.ids.slice(start, stop - start),
            self.rows[start:stop],
            self.keys[start:stop],
        )

    def take(self, indices: np.ndarray) -> Events:
        where = pa.array(indices, pa.int64())
        return Events(
            self.file,
            self.codes[indices],
            self.items.take(where),
            self.ids.take(where),
            self.rows[indices],
            self.keys[indices],
        )

    @property
    def item_sizes(self) -> np.ndarray:
        """Bytes of each item, its leading comma included."""
        offsets = _offsets(self.items)
        return np.diff(offsets)

    def raw_items(self) -> memoryview:
        """The items' bytes laid end to end (each with its leading comma)."""
        offsets = _offsets(self.items)
        return memoryview(self.items.buffers()[2])[offsets[0] : offsets[-1]]

    def names(self) -> list[str]:
        return [EVENT_NAMES[c] for c in self.codes.tolist()]

    def name_counts(self) -> dict[str, int]:
        counts = np.bincount(self.codes, minlength=len(EVENT_NAMES))
        return {EVENT_NAMES[c]: int(n) for c, n in enumerate(counts.tolist()) if n}

    def item(self, i: int) -> dict[str, object]:
        """One item as a dict (for tests and messages, not the hot path)."""
        value = self.items[i].as_py()
        assert isinstance(value, bytes)
        parsed = orjson.loads(value[1:])
        assert isinstance(parsed, dict)
        return parsed

    @staticmethod
    def concat(parts: Sequence[Events]) -> Events:
        if len(parts) == 1:
            return parts[0]
        return Events(
            parts[0].file,
            np.concatenate([p.codes for p in parts]),
            pa.concat_arrays([p.items for p in parts]),
            pa.concat_arrays([p.ids for p in parts]),
            np.concatenate([p.rows for p in parts]),
            np.concatenate([p.keys for p in parts]),
        )

    @staticmethod
    def empty(file: str) -> Events:
        return Events(
            file,
            np.empty(0, np.int8),
            pa.array([], pa.binary()),
            pa.array([], pa.string()),
            np.empty(0, np.int64),
            np.empty(0, KEY_DTYPE),
        )


def _offsets(array: pa.Array) -> np.ndarray:
    if not len(array):
        return np.zeros(1, np.int64)
    width = np.int64 if pa.types.is_large_binary(array.type) else np.int32
    raw = np.frombuffer(array.buffers()[1], dtype=width)
    return raw[array.offset : array.offset + len(array) + 1].astype(np.int64)
