"""Every body rule of the track API, through real HTTP: 400 naming the place, nothing stored."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from uploader.sandbox import Sandbox
from uploader.sandbox.rules import EVENT_NAMES, MIN_TIMESTAMP_MS, REWRITE_FROM_MS, check_body

from .wire import OMIT, TS, body, item, post

BAD_BODIES: list[tuple[str, Any, dict[str, Any], str]] = [
    # id, body, expected location, fragment of the error
    ("not-json", b'{"track": [', {}, "not valid JSON"),
    ("nan", b'{"track": [{"name": "Added to cart", "payload": [{"timestamp": NaN}]}]}', {}, "JSON"),
    ("infinity", b'{"track": [], "x": Infinity}', {}, "JSON"),
    ("top-level-list", [], {"field": "track"}, "JSON object"),
    ("no-track", {"events": []}, {"field": "track"}, "track"),
    ("extra-top-level", {"track": body()["track"], "batch": 1}, {"field": "batch"}, "unknown"),
    ("track-empty", {"track": []}, {"field": "track"}, "non-empty"),
    ("track-not-list", {"track": {"name": "Added to cart"}}, {"field": "track"}, "non-empty"),
    ("group-not-object", {"track": ["Added to cart"]}, {"group": 0}, "object"),
    (
        "group-extra-field",
        {"track": [{**body()["track"][0], "type": "x"}]},
        {"group": 0, "field": "type"},
        "unknown",
    ),
    ("name-case", body(name="Added To Cart"), {"group": 0, "field": "name"}, "must be one of"),
    ("name-other-event", body(name="Charge"), {"group": 0, "field": "name"}, "must be one of"),
    ("name-missing", {"track": [{"payload": [item()]}]}, {"group": 0, "field": "name"}, "name"),
    (
        "payload-empty",
        {"track": [{"name": "Product viewed", "payload": []}]},
        {"group": 0, "field": "payload"},
        "non-empty",
    ),
    (
        "payload-not-list",
        {"track": [{"name": "Product viewed", "payload": item()}]},
        {"group": 0, "field": "payload"},
        "non-empty",
    ),
    (
        "item-not-object",
        {"track": [{"name": "Added to cart", "payload": ["a"]}]},
        {"group": 0, "item": 0},
        "object",
    ),
    (
        "no-identity",
        body(item(userId=OMIT)),
        {"group": 0, "item": 0, "field": "userId"},
        "Either userId or profileId or accountId is required",
    ),
    (
        "another-user-id-alone",
        body(item(userId=OMIT, anotherUserId="u2")),
        {"item": 0},
        "Either userId or profileId or accountId is required",
    ),
    ("blank-user-id", body(item(userId="   ")), {"field": "userId"}, "non-blank"),
    ("empty-profile-id", body(item(profileId="")), {"field": "profileId"}, "non-blank"),
    ("numeric-user-id", body(item(userId=42)), {"field": "userId"}, "string"),
    ("numeric-event-id", body(item(eventId=7)), {"field": "eventId"}, "string"),
    ("null-user-id", body(item(userId=None, accountId="acme")), {"field": "userId"}, "null"),
    (
        "null-in-data",
        body(item(data={"productId": "SKU", "price": None})),
        {"field": "data.price"},
        "null",
    ),
    (
        "null-deep",
        body(item(userAttributes={"a": {"b": [1, None]}})),
        {"field": "userAttributes.a.b[1]"},
        "null",
    ),
    ("unknown-item-field", body(item(user_id="u")), {"field": "user_id"}, "unknown item field"),
    ("product-id-top-level", body(item(productId="SKU_987")), {"field": "productId"}, "catalogue"),
    ("data-missing", body(item(data=OMIT)), {"field": "data.productId"}, "productId"),
    ("data-not-object", body(item(data="SKU")), {"field": "data"}, "object"),
    (
        "product-id-missing",
        body(item(data={"quantity": 1})),
        {"field": "data.productId"},
        "productId",
    ),
    (
        "product-id-number",
        body(item(data={"productId": 987})),
        {"field": "data.productId"},
        "string",
    ),
    (
        "product-id-blank",
        body(item(data={"productId": " "})),
        {"field": "data.productId"},
        "non-blank",
    ),
    (
        "quantity-zero",
        body(item(data={"productId": "S", "quantity": 0})),
        {"field": "data.quantity"},
        "positive integer",
    ),
    (
        "quantity-negative",
        body(item(data={"productId": "S", "quantity": -1})),
        {"field": "data.quantity"},
        "positive integer",
    ),
    (
        "quantity-float",
        body(item(data={"productId": "S", "quantity": 2.0})),
        {"field": "data.quantity"},
        "positive integer",
    ),
    (
        "quantity-bool",
        body(item(data={"productId": "S", "quantity": True})),
        {"field": "data.quantity"},
        "positive integer",
    ),
    (
        "quantity-string",
        body(item(data={"productId": "S", "quantity": "2"})),
        {"field": "data.quantity"},
        "positive integer",
    ),
    ("timestamp-float", body(item(timestamp=float(TS))), {"field": "timestamp"}, "integer"),
    ("timestamp-bool", body(item(timestamp=True)), {"field": "timestamp"}, "integer"),
    ("timestamp-string", body(item(timestamp=str(TS))), {"field": "timestamp"}, "integer"),
    ("timestamp-seconds", body(item(timestamp=TS // 1000)), {"field": "timestamp"}, "before 2010"),
    (
        "timestamp-2009",
        body(item(timestamp=MIN_TIMESTAMP_MS - 1)),
        {"field": "timestamp"},
        "before 2010",
    ),
    (
        "user-attributes-list",
        body(item(userAttributes=["vip"])),
        {"field": "userAttributes"},
        "object",
    ),
]


@pytest.mark.parametrize(
    ("raw", "where", "fragment"), [case[1:] for case in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
def test_bad_body_is_refused_with_its_place_and_nothing_is_stored(
    sandbox: Sandbox, client: httpx.Client, raw: Any, where: dict[str, Any], fragment: str
) -> None:
    response = post(client, sandbox, raw)

    assert response.status_code == 400
    answer = response.json()
    assert fragment in answer["error"]
    assert {key: answer.get(key) for key in where} == where
    stats = sandbox.stats()
    assert (stats["events"], stats["status_counts"]) == (0, {"400": 1})


def test_one_bad_item_refuses_the_whole_request(sandbox: Sandbox, client: httpx.Client) -> None:
    good = {"name": "Product viewed", "payload": [item(), item()]}
    bad = {"name": "Product ordered", "payload": [item(), item(), item(timestamp=1_000)]}

    response = post(client, sandbox, {"track": [good, bad]})

    assert response.status_code == 400
    assert response.json() == {
        "error": response.json()["error"],
        "group": 1,
        "item": 2,
        "field": "timestamp",
    }
    assert sandbox.stats()["events"] == 0


def test_every_event_name_and_every_item_field_is_accepted(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    full = item(
        profileId="p-1",
        anotherUserId="u-2",
        accountId="acme",
        anotherAccountId="acme-eu",
        sessionId="s-1",
        pageId="pg-1",
        data={"productId": "SKU_1", "quantity": 3, "price": 9.5, "tags": ["a"], "meta": {"x": 1}},
        userAttributes={"tier": "gold"},
        accountAttributes={"size": 10},
    )
    groups: list[dict[str, Any]] = [{"name": name, "payload": [item()]} for name in EVENT_NAMES]
    groups[0]["payload"].append(full)

    response = post(client, sandbox, {"track": groups})

    assert (response.status_code, response.json()) == (201, {})
    assert [e["name"] for e in sandbox.events()] == [EVENT_NAMES[0], *EVENT_NAMES]
    assert sandbox.events()[1]["item"] == full


@pytest.mark.parametrize(
    "identity",
    [{"userId": "u"}, {"profileId": "p"}, {"accountId": "a"}],
    ids=["userId", "profileId", "accountId"],
)
def test_any_one_identity_is_enough(
    sandbox: Sandbox, client: httpx.Client, identity: dict[str, str]
) -> None:
    response = post(client, sandbox, body({**item(userId=OMIT), **identity}))

    assert response.status_code == 201


def test_quantity_may_be_absent(sandbox: Sandbox, client: httpx.Client) -> None:
    response = post(client, sandbox, body(item(data={"productId": "SKU_1"}), name="Product viewed"))

    assert response.status_code == 201


def test_timestamp_on_the_2010_bound_is_kept(sandbox: Sandbox, client: httpx.Client) -> None:
    response = post(client, sandbox, body(item(timestamp=MIN_TIMESTAMP_MS)))

    assert response.status_code == 201
    assert sandbox.events()[0]["timestamp"] == MIN_TIMESTAMP_MS


@pytest.mark.parametrize(
    "sent",
    [REWRITE_FROM_MS, TS * 1000, TS * 1_000_000],
    ids=["2040", "microseconds", "nanoseconds"],
)
def test_timestamp_from_2040_is_stored_as_now_and_counted(
    sandbox: Sandbox, client: httpx.Client, sent: int
) -> None:
    before = time.time_ns() // 1_000_000
    response = post(client, sandbox, body(item(timestamp=sent), item()))
    after = time.time_ns() // 1_000_000

    assert response.status_code == 201
    rewritten, kept = sandbox.events()
    assert before <= rewritten["timestamp"] <= after
    assert (rewritten["rewritten"], rewritten["item"]["timestamp"]) == (True, sent)
    assert (kept["timestamp"], kept["rewritten"]) == (TS, False)
    assert sandbox.stats()["rewritten_timestamps"] == 1


def test_missing_timestamp_is_stamped_on_arrival_but_not_counted_as_rewritten(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    before = time.time_ns() // 1_000_000
    post(client, sandbox, body(item(timestamp=OMIT)))

    assert sandbox.events()[0]["timestamp"] >= before
    assert sandbox.stats()["rewritten_timestamps"] == 0


def test_check_body_is_pure_and_returns_one_event_per_item() -> None:
    raw = b'{"track": [{"name": "Product viewed", "payload": [{"userId": "u", "eventId": "e",'
    raw += b' "data": {"productId": "P"}, "timestamp": 2208988800000}]}]}'

    verdict = check_body(raw)

    assert isinstance(verdict, list)
    (event,) = verdict

    assert (event.name, event.event_id, event.rewritten) == ("Product viewed", "e", True)
    assert event.stored_timestamp(now_ms=123) == 123
