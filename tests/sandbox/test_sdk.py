"""The official Intempt SDK (PyPI intempt 2.0.0) against the sandbox.

Independent of our own client: what the SDK sends must be stored, and what the docs say the
real API refuses must be refused here too. Where the SDK refuses a mistake before sending,
the raw body it would have sent is posted instead, so the sandbox is still held to the rule.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from intempt import BatchOptions, Intempt, IntemptApiError, IntemptConfigError

from uploader.sandbox import Sandbox

from .wire import post

MakeSandbox = Callable[..., Sandbox]

USER = "shopper@example.com"


def connect(sb: Sandbox, **options: Any) -> Intempt:
    settings: dict[str, Any] = {
        "org": sb.org,
        "project": sb.project,
        "api_key": sb.api_key,
        "source_id": sb.source,
        "host": f"127.0.0.1:{sb.port}",
        "scheme": "http",
        "timeout": 5,
    }
    return Intempt(**{**settings, **options})


@pytest.fixture
def sdk(sandbox: Sandbox) -> Iterator[Intempt]:
    client = connect(sandbox)
    yield client
    client.close()


def sdk_item(**fields: Any) -> dict[str, Any]:
    """An item shaped as the SDK's _track_lines builds it, for mistakes it will not send."""
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    return {"eventId": str(uuid.uuid4()), "timestamp": now, **fields}


# -- accepted -------------------------------------------------------------------------------


def test_commerce_calls_are_accepted_and_stored(sandbox: Sandbox, sdk: Intempt) -> None:
    sdk.ecommerce.product_viewed(product_id="SKU_1", user_id=USER)
    sdk.ecommerce.added_to_cart(product_id="SKU_2", quantity=2, user_id=USER)
    sdk.ecommerce.ordered(
        products=[{"product_id": "SKU_2", "quantity": 2}, {"product_id": "SKU_3"}],
        account_id="acme",
    )

    events = sandbox.events()
    assert [(e["name"], e["item"]["data"]) for e in events] == [
        ("Product viewed", {"productId": "SKU_1"}),
        ("Added to cart", {"productId": "SKU_2", "quantity": 2}),
        ("Product ordered", {"productId": "SKU_2", "quantity": 2}),
        ("Product ordered", {"productId": "SKU_3"}),
    ]
    assert sandbox.stats()["status_counts"] == {"201": 3}


def test_sdk_order_lines_share_one_event_id_and_are_not_deduplicated(
    sandbox: Sandbox, sdk: Intempt
) -> None:
    sdk.ecommerce.ordered(
        products=[{"product_id": "A"}, {"product_id": "B"}, {"product_id": "C"}], user_id=USER
    )

    stats = sandbox.stats()
    assert (stats["events"], stats["unique_event_ids"], stats["duplicate_events"]) == (3, 1, 2)


def test_track_and_track_batch_with_commerce_names_are_accepted(
    sandbox: Sandbox, sdk: Intempt
) -> None:
    when = dt.datetime(2023, 3, 1, 12, tzinfo=dt.UTC)
    sdk.track(
        "Removed from cart",
        user_id=USER,
        timestamp=when,
        properties={"productId": "SKU_9", "quantity": 1},
    )
    sdk.track_batch(
        [
            {"event": "Product viewed", "profile_id": "p-1", "properties": {"productId": "A"}},
            {"event": "Added to cart", "account_id": "acme", "properties": {"productId": "B"}},
        ]
    )

    events = sandbox.events()
    assert [e["name"] for e in events] == ["Removed from cart", "Product viewed", "Added to cart"]
    assert events[0]["timestamp"] == int(when.timestamp() * 1000)
    assert sandbox.stats()["requests"] == 2  # the batch is one request with two groups


def test_buffered_sdk_splits_its_batch_on_413_and_everything_arrives(
    make_sandbox: MakeSandbox,
) -> None:
    probe = make_sandbox()
    with connect(probe) as client:
        client.ecommerce.product_viewed(product_id="SKU_1", user_id=USER)
    one_event = probe.stats()["bytes"]
    sb = make_sandbox(max_body_bytes=2 * one_event)  # two events fit, four do not

    client = connect(sb, batch=BatchOptions(size=4, flush_ms=60_000, flush_on_exit=False))
    for n in range(4):
        client.ecommerce.product_viewed(product_id=f"SKU_{n}", user_id=USER)
    client.close()

    stats = sb.stats()
    assert stats["status_counts"] == {"413": 1, "201": 2}
    assert stats["events"] == 4


def test_buffered_sdk_resends_a_dropped_batch_which_is_stored_twice(
    make_sandbox: MakeSandbox,
) -> None:
    sb = make_sandbox(drop_rate=0.5, seed=3)  # seed 3: the first request drops, the next passes

    # size=1 sends at once; flush_ms=1 makes the SDK's retry wait its 100 ms floor.
    client = connect(sb, batch=BatchOptions(size=1, flush_ms=1, flush_on_exit=False))
    client.ecommerce.ordered(products=[{"product_id": "A"}, {"product_id": "B"}], user_id=USER)
    client.close()

    stats = sb.stats()
    assert (stats["dropped"], stats["status_counts"]) == (1, {"201": 1})
    assert (stats["events"], stats["unique_event_ids"]) == (4, 1)


# -- refused by the sandbox, as the docs say the API refuses them -------------------------


def _refused(call: Callable[[], None]) -> dict[str, Any]:
    with pytest.raises(IntemptApiError) as caught:
        call()
    assert caught.value.status == 400
    assert caught.value.body is not None
    answer: dict[str, Any] = orjson.loads(caught.value.body)
    return answer


def test_timestamp_before_2010_fails_the_request(sandbox: Sandbox, sdk: Intempt) -> None:
    answer = _refused(
        lambda: sdk.ecommerce.product_viewed(
            product_id="SKU_1", user_id=USER, timestamp=dt.datetime(2009, 12, 31, tzinfo=dt.UTC)
        )
    )

    assert answer["field"] == "timestamp"
    assert "before 2010" in answer["error"]
    assert sandbox.stats()["events"] == 0


def test_timestamp_in_seconds_fails_the_request(sandbox: Sandbox, sdk: Intempt) -> None:
    answer = _refused(
        lambda: sdk.ecommerce.added_to_cart(
            product_id="SKU_1", quantity=1, user_id=USER, timestamp=1_714_631_904
        )
    )

    assert answer["field"] == "timestamp"


def test_timestamp_in_microseconds_is_stored_as_now(sandbox: Sandbox, sdk: Intempt) -> None:
    sdk.ecommerce.product_viewed(product_id="SKU_1", user_id=USER, timestamp=1_714_631_904_000_000)

    assert sandbox.stats()["rewritten_timestamps"] == 1
    assert sandbox.events()[0]["timestamp"] < 1_714_631_904_000_000


def test_null_property_is_refused(sandbox: Sandbox, sdk: Intempt) -> None:
    answer = _refused(
        lambda: sdk.track(
            "Product viewed", user_id=USER, properties={"productId": "SKU_1", "price": None}
        )
    )

    assert answer["field"] == "data.price"


def test_commerce_event_without_product_id_is_refused(sandbox: Sandbox, sdk: Intempt) -> None:
    answer = _refused(lambda: sdk.track("Added to cart", user_id=USER, properties={"qty": 1}))

    assert answer["field"] == "data.productId"


def test_event_name_outside_the_four_is_refused(sandbox: Sandbox, sdk: Intempt) -> None:
    answer = _refused(
        lambda: sdk.track("product viewed", user_id=USER, properties={"productId": "SKU_1"})
    )

    assert answer["field"] == "name"


@pytest.mark.parametrize(
    "options",
    [{"api_key": "sandbox.wrong"}, {"org": "other"}, {"project": "other"}, {"source_id": "1"}],
    ids=["key", "org", "project", "source"],
)
def test_wrong_credentials_are_401_and_not_retryable(
    sandbox: Sandbox, options: dict[str, str]
) -> None:
    with connect(sandbox, **options) as client, pytest.raises(IntemptApiError) as caught:
        client.ecommerce.product_viewed(product_id="SKU_1", user_id=USER)

    assert caught.value.status == 401
    assert not caught.value.retryable


# -- refused by the SDK before sending: the sandbox refuses the same body -------------------


@pytest.mark.parametrize(
    ("call", "raw_item", "field", "fragment"),
    [
        (
            lambda c: c.ecommerce.product_viewed(product_id="SKU_1"),
            sdk_item(data={"productId": "SKU_1"}),
            "userId",
            "Either userId or profileId or accountId is required",
        ),
        (
            lambda c: c.ecommerce.product_viewed(product_id="SKU_1", user_id="   "),
            sdk_item(userId="   ", data={"productId": "SKU_1"}),
            "userId",
            "non-blank",
        ),
        (
            lambda c: c.ecommerce.added_to_cart(product_id="SKU_1", quantity=0, user_id=USER),
            sdk_item(userId=USER, data={"productId": "SKU_1", "quantity": 0}),
            "data.quantity",
            "positive integer",
        ),
        (
            lambda c: c.ecommerce.added_to_cart(product_id="SKU_1", quantity=1.5, user_id=USER),
            sdk_item(userId=USER, data={"productId": "SKU_1", "quantity": 1.5}),
            "data.quantity",
            "positive integer",
        ),
        (
            lambda c: c.ecommerce.product_viewed(product_id="", user_id=USER),
            sdk_item(userId=USER, data={"productId": ""}),
            "data.productId",
            "non-blank",
        ),
    ],
    ids=["no-identity", "blank-identity", "quantity-zero", "quantity-float", "blank-product"],
)
def test_what_the_sdk_refuses_the_sandbox_refuses(
    sandbox: Sandbox,
    sdk: Intempt,
    client: httpx.Client,
    call: Callable[[Intempt], None],
    raw_item: dict[str, Any],
    field: str,
    fragment: str,
) -> None:
    with pytest.raises(IntemptConfigError):
        call(sdk)
    assert sandbox.stats()["requests"] == 0

    name = "Added to cart" if "quantity" in raw_item["data"] else "Product viewed"
    response = post(client, sandbox, {"track": [{"name": name, "payload": [raw_item]}]})

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert fragment in response.json()["error"]
