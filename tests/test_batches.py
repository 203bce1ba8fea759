from __future__ import annotations

import itertools

import orjson
from hypothesis import given
from hypothesis import strategies as st

from uploader.batches import body_size_alone, encode_body, pack_batches, split_batch
from uploader.contract import EVENT_NAMES
from uploader.event_ids import Event


def make_event(i: int, name: str, pad: int) -> Event:
    item = orjson.dumps({"eventId": f"e{i}", "userId": "u", "data": {"productId": "x" * pad}})
    return Event(name, f"e{i}", item, "f.csv", i + 1)


events_strategy = st.lists(
    st.tuples(st.sampled_from(EVENT_NAMES), st.integers(0, 400)), max_size=200
).map(lambda specs: [make_event(i, name, pad) for i, (name, pad) in enumerate(specs)])


@given(events=events_strategy, batch_size=st.integers(1, 60), max_bytes=st.integers(1024, 8000))
def test_batches_concatenate_back_to_the_input_and_respect_both_limits(
    events, batch_size, max_bytes
):
    fitting = [e for e in events if body_size_alone(e) <= max_bytes]
    batches = list(pack_batches(fitting, batch_size, max_bytes))
    assert [e for b in batches for e in b.events] == fitting
    assert [b.seq for b in batches] == list(range(len(batches)))
    for batch in batches:
        assert 1 <= len(batch) <= batch_size
        assert len(batch.body) <= max_bytes
        body = orjson.loads(batch.body)
        groups = body["track"]
        assert len({g["name"] for g in groups}) == len(groups)  # one group per name
        assert all(g["payload"] for g in groups)  # no empty groups
        sent = sorted(item["eventId"] for g in groups for item in g["payload"])
        assert sent == sorted(e.event_id for e in batch.events)


@given(events=events_strategy, batch_size=st.integers(1, 60), max_bytes=st.integers(1024, 8000))
def test_a_batch_is_only_cut_when_the_next_event_would_not_fit(events, batch_size, max_bytes):
    fitting = [e for e in events if body_size_alone(e) <= max_bytes]
    batches = list(pack_batches(fitting, batch_size, max_bytes))
    for batch, following in itertools.pairwise(batches):
        grown = [*batch.events, following.events[0]]
        assert len(grown) > batch_size or len(encode_body(grown)) > max_bytes


def test_body_shape_matches_the_api():
    events = [make_event(0, "Product viewed", 1), make_event(1, "Added to cart", 1),
              make_event(2, "Product viewed", 1)]  # fmt: skip
    (batch,) = pack_batches(events, 10, 10_000)
    assert orjson.loads(batch.body) == {
        "track": [
            {"name": "Product viewed", "payload": [orjson.loads(events[0].item),
                                                   orjson.loads(events[2].item)]},
            {"name": "Added to cart", "payload": [orjson.loads(events[1].item)]},
        ]
    }  # fmt: skip


@given(events=events_strategy.filter(lambda e: len(e) >= 2))
def test_split_halves_keep_every_event_once(events):
    (batch,) = pack_batches(events, 1000, 10**9)
    left, right = split_batch(batch)
    assert left.events + right.events == batch.events
    assert left.body == encode_body(left.events)
    assert right.body == encode_body(right.events)
