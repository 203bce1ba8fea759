"""Events built by hand for the tests of the stages after the id stage."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa

from uploader.batches import encode_body
from uploader.events import KEY_DTYPE, NAME_CODES, Events


@dataclass(frozen=True)
class Item:
    """One event as a test writes it: its name, its id, the item's JSON, its source row."""

    name: str
    event_id: str
    item: bytes
    row: int


def item(i: int, name: str = "Product viewed", pad: int = 0, row: int | None = None) -> Item:
    body = {"eventId": f"e{i}", "userId": f"u{i}", "data": {"productId": "p" * (1 + pad)}}
    return Item(name, f"e{i}", orjson.dumps(body), i + 1 if row is None else row)


def events_of(items: Sequence[Item], file: str = "in.csv") -> Events:
    """The column-wise block the id stage would have made of these items."""
    return Events(
        file,
        np.array([NAME_CODES[i.name] for i in items], dtype=np.int8),
        pa.array([b"," + i.item for i in items], pa.binary()),
        pa.array([i.event_id for i in items], pa.string()),
        np.array([i.row for i in items], dtype=np.int64),
        np.zeros(len(items), dtype=KEY_DTYPE),
    )


def items_of(events: Events) -> list[Item]:
    """The inverse of events_of."""
    return [
        Item(name, event_id, raw[1:], row)
        for name, event_id, raw, row in zip(
            events.names(),
            events.ids.to_pylist(),
            events.items.to_pylist(),
            events.rows.tolist(),
            strict=True,
        )
    ]


def body_of(items: Sequence[Item]) -> bytes:
    return encode_body(events_of(items))
