"""Batch stage: cut the events into `{"track": [...]}` request bodies within two limits.

A body holds at most `batch_size` events and `max_bytes` serialised bytes, and the events
of one input only. Events keep their input order across batches; inside one body they are
grouped by event name (one group per name, in order of first appearance). Sizes are exact:
a cut is the longest run of events that fits, as if they were added one by one.

Column-wise: a body is a few slices of the items' buffer (see events.py), not a join of
per-event bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import orjson

from uploader.contract import EVENT_NAMES
from uploader.events import Events

_BODY_HEAD = b'{"track":['
_BODY_TAIL = b"]}"
_GROUP_TAIL = b"]}"
GROUP_HEADS = tuple(b'{"name":' + orjson.dumps(n) + b',"payload":[' for n in EVENT_NAMES)
# Bytes a group adds besides its items: its head and tail.
_GROUP_COST = np.array([len(h) + len(_GROUP_TAIL) for h in GROUP_HEADS], dtype=np.int64)
# Bytes of a body besides its groups and items: head, tail, and the item commas' balance
# (each item carries a leading comma; the first of each group is dropped, and one comma
# joins each two groups: one byte less than the items' commas per body).
_BODY_COST = len(_BODY_HEAD) + len(_BODY_TAIL) - 1


@dataclass(frozen=True)
class Batch:
    """One request: its events in input order, and the exact body that carries them."""

    seq: int
    events: Events
    body: bytes

    def __len__(self) -> int:
        return len(self.events)

    @property
    def file(self) -> str:
        return self.events.file


def body_sizes_alone(item_sizes: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Bytes of a body that carries each event on its own, from its item's size (leading
    comma included) and its name code."""
    sizes: np.ndarray = _BODY_COST + item_sizes + _GROUP_COST[codes]
    return sizes


def encode_body(events: Events) -> bytes:
    codes = events.codes
    first_code = codes[0]
    if (codes == first_code).all():
        groups = [(int(first_code), events)]
    else:
        present, first_at = np.unique(codes, return_index=True)
        ranked = present[np.argsort(first_at)]
        rank = np.zeros(len(EVENT_NAMES), dtype=np.int64)
        rank[ranked] = np.arange(len(ranked))
        order = np.argsort(rank[codes], kind="stable")
        grouped = events.take(order)
        counts = np.bincount(rank[codes], minlength=len(ranked)).tolist()
        starts = np.concatenate(([0], np.cumsum(counts)[:-1])).tolist()
        groups = [
            (int(code), grouped.slice(start, start + count))
            for code, start, count in zip(ranked.tolist(), starts, counts, strict=True)
        ]
    parts = [GROUP_HEADS[code] + part.raw_items()[1:] + _GROUP_TAIL for code, part in groups]
    return _BODY_HEAD + b",".join(parts) + _BODY_TAIL


def body_size(sizes: np.ndarray, codes: np.ndarray) -> int:
    """Exact bytes of the body of events with these item sizes and name codes."""
    present = np.bincount(codes, minlength=len(EVENT_NAMES)) > 0
    return int(_BODY_COST + sizes.sum() + _GROUP_COST[present].sum())


class Packer:
    """Cuts one input's stream of event blocks into batches: `add` yields the full ones and
    keeps the rest for the next block, `flush` yields what is left at the input's end."""

    def __init__(self, batch_size: int, max_bytes: int, first_seq: int = 0) -> None:
        self.batch_size = batch_size
        self.max_bytes = max_bytes
        self.seq = first_seq
        self.pending: Events | None = None

    def add(self, events: Events) -> Iterator[Batch]:
        if not len(events):
            return
        if self.pending is not None and self.pending.file != events.file:
            yield from self.flush()
        stream = events if self.pending is None else Events.concat([self.pending, events])
        self.pending = None
        yield from self._cut(stream, final=False)

    def flush(self) -> Iterator[Batch]:
        stream, self.pending = self.pending, None
        if stream is not None:
            yield from self._cut(stream, final=True)

    def _cut(self, events: Events, *, final: bool) -> Iterator[Batch]:
        sizes = events.item_sizes
        codes = events.codes
        start, n = 0, len(events)
        while start < n:
            stop = min(start + self.batch_size, n)
            full = stop - start == self.batch_size
            if body_size(sizes[start:stop], codes[start:stop]) > self.max_bytes:
                stop = self._longest_fit(sizes, codes, start, stop)
                full = True
            if not (full or final):
                self.pending = events.slice(start, n)
                return
            part = events.slice(start, stop)
            yield Batch(self.seq, part, encode_body(part))
            self.seq += 1
            start = stop

    def _longest_fit(self, sizes: np.ndarray, codes: np.ndarray, start: int, stop: int) -> int:
        """The largest end in (start, stop) whose body fits; at least one event (an event
        too large for a body of its own must be filtered out before, see body_sizes_alone)."""
        low, high = start + 1, stop - 1  # low always fits
        while low < high:
            middle = (low + high + 1) // 2
            if body_size(sizes[start:middle], codes[start:middle]) <= self.max_bytes:
                low = middle
            else:
                high = middle - 1
        return low


def pack_batches(
    blocks: Iterable[Events], batch_size: int, max_bytes: int, first_seq: int = 0
) -> Iterator[Batch]:
    """Cut a stream of event blocks (one input after another) into batches."""
    packer = Packer(batch_size, max_bytes, first_seq)
    for block in blocks:
        yield from packer.add(block)
    yield from packer.flush()


def split_batch(batch: Batch) -> tuple[Batch, Batch]:
    """Two halves of a batch (for a 413, or to find the items a 400 refuses)."""
    half = len(batch) // 2
    first, second = batch.events.slice(0, half), batch.events.slice(half, len(batch))
    return Batch(batch.seq, first, encode_body(first)), Batch(
        batch.seq, second, encode_body(second)
    )
