"""Batch stage: pack events into `{"track": [...]}` request bodies within two limits.

A body holds at most `batch_size` events and `max_bytes` serialised bytes. Events keep
their input order across batches; inside one body they are grouped by event name (one
group per name, in order of first appearance). Sizes are computed exactly, not estimated.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import orjson

from uploader.event_ids import Event

_BODY_HEAD = b'{"track":['
_BODY_TAIL = b"]}"
_GROUP_TAIL = b"]}"


@dataclass(frozen=True)
class Batch:
    """One request: its events in input order, and the exact body that carries them."""

    seq: int
    events: tuple[Event, ...]
    body: bytes

    def __len__(self) -> int:
        return len(self.events)


def _group_head(name: str) -> bytes:
    return b'{"name":' + orjson.dumps(name) + b',"payload":['


def body_size_alone(event: Event) -> int:
    """Bytes of a body that carries this event only."""
    return len(_BODY_HEAD) + len(_group_head(event.name)) + len(event.item) + 4


def encode_body(events: Sequence[Event]) -> bytes:
    groups: dict[str, list[bytes]] = {}
    for event in events:
        groups.setdefault(event.name, []).append(event.item)
    parts = [_group_head(name) + b",".join(items) + _GROUP_TAIL for name, items in groups.items()]
    return _BODY_HEAD + b",".join(parts) + _BODY_TAIL


def pack_batches(
    events: Iterable[Event], batch_size: int, max_bytes: int, first_seq: int = 0
) -> Iterator[Batch]:
    """Cut the event stream into batches. An event too large for a body of its own must be
    filtered out before (see body_size_alone): it is never packed."""
    seq = first_seq
    pending: list[Event] = []
    names: set[str] = set()
    size = len(_BODY_HEAD) + len(_BODY_TAIL)
    for event in events:
        if event.name in names:
            grow = len(event.item) + 1
        else:
            grow = len(_group_head(event.name)) + len(event.item) + len(_GROUP_TAIL)
            grow += 1 if names else 0
        if pending and (len(pending) >= batch_size or size + grow > max_bytes):
            yield Batch(seq, tuple(pending), encode_body(pending))
            seq += 1
            pending, names = [], set()
            size = len(_BODY_HEAD) + len(_BODY_TAIL)
            grow = len(_group_head(event.name)) + len(event.item) + len(_GROUP_TAIL)
        pending.append(event)
        names.add(event.name)
        size += grow
    if pending:
        yield Batch(seq, tuple(pending), encode_body(pending))


def split_batch(batch: Batch) -> tuple[Batch, Batch]:
    """Two halves of a batch (for a 413, or to find the items a 400 refuses)."""
    half = len(batch.events) // 2
    first, second = batch.events[:half], batch.events[half:]
    return Batch(batch.seq, first, encode_body(first)), Batch(
        batch.seq, second, encode_body(second)
    )
