from __future__ import annotations

import itertools

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tests.factories import body_of, events_of, item, items_of
from uploader.batches import Packer, body_sizes_alone, encode_body, pack_batches, split_batch
from uploader.contract import EVENT_NAMES

items_strategy = st.lists(
    st.tuples(st.sampled_from(EVENT_NAMES), st.integers(0, 400)), max_size=200
).map(lambda specs: [item(i, name, pad) for i, (name, pad) in enumerate(specs)])


def fitting(items, max_bytes):
    return [i for i in items if len(body_of([i])) <= max_bytes]


def in_blocks(items, cuts):
    """The items as a stream of blocks of one file, cut at `cuts`."""
    bounds = sorted({0, len(items), *(c for c in cuts if 0 < c < len(items))})
    return [events_of(items[a:b]) for a, b in itertools.pairwise(bounds)]


@given(
    items=items_strategy,
    batch_size=st.integers(1, 60),
    max_bytes=st.integers(1024, 8000),
    cuts=st.lists(st.integers(0, 200), max_size=6),
)
def test_batches_concatenate_back_to_the_input_and_respect_both_limits(
    items, batch_size, max_bytes, cuts
):
    items = fitting(items, max_bytes)
    batches = list(pack_batches(in_blocks(items, cuts), batch_size, max_bytes))
    assert [i for b in batches for i in items_of(b.events)] == items
    assert [b.seq for b in batches] == list(range(len(batches)))
    for batch in batches:
        assert 1 <= len(batch) <= batch_size
        assert len(batch.body) <= max_bytes
        body = orjson.loads(batch.body)
        groups = body["track"]
        assert len({g["name"] for g in groups}) == len(groups)  # one group per name
        assert all(g["payload"] for g in groups)  # no empty groups
        sent = sorted(i["eventId"] for g in groups for i in g["payload"])
        assert sent == sorted(batch.events.ids.to_pylist())


@given(
    items=items_strategy,
    batch_size=st.integers(1, 60),
    max_bytes=st.integers(1024, 8000),
    cuts=st.lists(st.integers(0, 200), max_size=6),
)
def test_a_batch_is_only_cut_when_the_next_event_would_not_fit(items, batch_size, max_bytes, cuts):
    items = fitting(items, max_bytes)
    batches = list(pack_batches(in_blocks(items, cuts), batch_size, max_bytes))
    for batch, following in itertools.pairwise(batches):
        grown = [*items_of(batch.events), items_of(following.events)[0]]
        assert len(grown) > batch_size or len(body_of(grown)) > max_bytes


@given(items=items_strategy.filter(len), data=st.data())
def test_the_computed_size_is_the_size_of_the_body(items, data):
    start = data.draw(st.integers(0, len(items) - 1))
    stop = data.draw(st.integers(start + 1, len(items)))
    events = events_of(items[start:stop])
    alone = body_sizes_alone(events.item_sizes, events.codes)
    assert alone.tolist() == [len(body_of([i])) for i in items[start:stop]]
    assert orjson.loads(encode_body(events))  # valid JSON


def test_body_shape_matches_the_api():
    items = [item(0, "Product viewed"), item(1, "Added to cart"), item(2, "Product viewed")]
    (batch,) = pack_batches([events_of(items)], 10, 10_000)
    assert orjson.loads(batch.body) == {
        "track": [
            {"name": "Product viewed", "payload": [orjson.loads(items[0].item),
                                                   orjson.loads(items[2].item)]},
            {"name": "Added to cart", "payload": [orjson.loads(items[1].item)]},
        ]
    }  # fmt: skip


def test_a_batch_never_mixes_two_inputs():
    a = events_of([item(0), item(1)], file="a.csv")
    b = events_of([item(2), item(3)], file="b.csv")
    batches = list(pack_batches([a, b], 10, 10_000))
    assert [(batch.file, len(batch)) for batch in batches] == [("a.csv", 2), ("b.csv", 2)]


def test_the_packer_keeps_a_short_tail_for_the_next_block():
    packer = Packer(batch_size=3, max_bytes=10_000)
    first = list(packer.add(events_of([item(i) for i in range(4)])))
    assert [len(b) for b in first] == [3]  # the fourth waits for more
    second = list(packer.add(events_of([item(i) for i in range(4, 6)])))
    assert [b.events.ids.to_pylist() for b in second] == [["e3", "e4", "e5"]]
    assert list(packer.flush()) == []


@given(items=items_strategy.filter(lambda e: len(e) >= 2))
def test_split_halves_keep_every_event_once(items):
    (batch,) = pack_batches([events_of(items)], 1000, 10**9)
    left, right = split_batch(batch)
    assert items_of(left.events) + items_of(right.events) == items
    assert left.body == encode_body(left.events)
    assert right.body == encode_body(right.events)
