"""Events, the column-wise block: slicing, taking, joining and the empty block keep every
column aligned with the others, and the item bytes are where the batches look for them."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tests.factories import Item, events_of, item
from uploader.contract import EVENT_NAMES
from uploader.events import KEY_DTYPE, Events

items_strategy = st.lists(
    st.builds(item, st.integers(0, 10_000), st.sampled_from(EVENT_NAMES), st.integers(0, 40)),
    max_size=30,
)


def block(items: list[Item]) -> Events:
    """events_of, with a content key of its own per event, so that the keys can misalign."""
    keys = np.array([b"k%d" % n for n in range(len(items))], dtype=KEY_DTYPE)
    return replace(events_of(items), keys=keys)


def columns(events: Events) -> list[tuple[Any, ...]]:
    """One tuple per event, across every column."""
    return list(
        zip(
            events.names(),
            events.ids.to_pylist(),
            events.items.to_pylist(),
            events.rows.tolist(),
            events.keys.tolist(),
            strict=True,
        )
    )


@given(items=items_strategy, data=st.data())
def test_a_slice_is_the_same_events_in_every_column(items: list[Item], data: Any) -> None:
    events = block(items)
    start = data.draw(st.integers(0, len(items)))
    stop = data.draw(st.integers(start, len(items)))
    part = events.slice(start, stop)
    assert len(part) == stop - start
    assert columns(part) == columns(events)[start:stop]
    assert part.file == events.file


@given(items=items_strategy, data=st.data())
def test_take_picks_the_same_events_in_every_column(items: list[Item], data: Any) -> None:
    events = block(items)
    n = len(items)
    picked = data.draw(st.lists(st.integers(0, n - 1), max_size=40) if n else st.just([]))
    taken = events.take(np.array(picked, dtype=np.int64))
    assert columns(taken) == [columns(events)[i] for i in picked]


@given(items=items_strategy, cuts=st.lists(st.integers(0, 30), max_size=5))
def test_slices_concatenate_back_to_the_block(items: list[Item], cuts: list[int]) -> None:
    events = block(items)
    bounds = [0, *sorted(min(c, len(items)) for c in cuts), len(items)]
    parts = [events.slice(a, b) for a, b in itertools.pairwise(bounds)]
    assert columns(Events.concat(parts)) == columns(events)


def test_the_empty_block_has_every_column_empty_and_joins_as_nothing() -> None:
    empty = Events.empty("in.csv")
    assert (len(empty), empty.file, columns(empty)) == (0, "in.csv", [])
    assert empty.item_sizes.tolist() == []
    assert bytes(empty.raw_items()) == b""
    assert empty.name_counts() == {}
    assert empty.keys.dtype == KEY_DTYPE
    events = block([item(i) for i in range(3)])
    assert columns(Events.concat([empty, events, empty])) == columns(events)
    assert Events.concat([events]) is events


@given(items=items_strategy, data=st.data())
def test_item_sizes_and_raw_items_follow_slices_and_takes(items: list[Item], data: Any) -> None:
    events = block(items)
    n = len(items)
    picked = data.draw(st.lists(st.integers(0, n - 1), max_size=20) if n else st.just([]))
    taken = events.take(np.array(picked, dtype=np.int64))
    start = data.draw(st.integers(0, len(taken)))
    view = taken.slice(start, len(taken))  # an Arrow array with an offset
    expected = [b"," + items[i].item for i in picked][start:]
    assert view.item_sizes.tolist() == [len(e) for e in expected]
    assert bytes(view.raw_items()) == b"".join(expected)


def test_names_counts_and_items_read_back() -> None:
    items = [item(i, EVENT_NAMES[i % 3]) for i in range(7)]
    events = block(items)
    assert events.names() == [i.name for i in items]
    assert events.name_counts() == dict(Counter(i.name for i in items))
    assert events.item(4) == {"eventId": "e4", "userId": "u4", "data": {"productId": "p"}}
