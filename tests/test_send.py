"""The send stage against a scripted fake API (httpx.MockTransport), with a fake clock and a
recording sleep: every backoff decision is asserted, nothing waits."""

from __future__ import annotations

import asyncio
import base64
import random
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.factories import Item, body_of, events_of
from tests.fakes import FakeClock, RecordingSleep
from tests.scripted_api import Reset, ScriptedApi, answer
from uploader.batches import Batch, pack_batches
from uploader.cli import main
from uploader.errors import ConfigError, SendError
from uploader.events import Events
from uploader.send import (
    TOO_LARGE,
    AdaptiveConcurrency,
    RetryPolicy,
    Sender,
    parse_retry_after,
)
from uploader.target import Credentials, Target
from uploader.transport import Http11Transport

KEY = "pk_live42.s3cr3t-Value_xyz0123456789"
PREFIX, SECRET = KEY.split(".")
TOKEN = base64.b64encode(f"{PREFIX}:{SECRET}".encode()).decode()
CREDENTIALS = Credentials.from_key(KEY)
SOURCE = "7301234567890123456"
TARGET = Target("https://api.test", "acme org/eu", "shop&co?", SOURCE)
MISSING_ID = "Either userId or profileId or accountId is required"

Handler = Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response]
Step = httpx.Response | Exception | int


# --- fakes -----------------------------------------------------------------------------------


class Ceiling:
    """An rng whose jitter is always the full ceiling: delays become exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Script:
    """The fake API: answers from a list of steps (a status, a Response, or an exception to
    raise), or from a function of the request's event ids. Records every request."""

    def __init__(
        self,
        steps: Sequence[Step] = (),
        decide: Callable[[list[str]], Step] | None = None,
        tick: float = 0.0,
        clock: FakeClock | None = None,
    ) -> None:
        self.steps = list(steps)
        self.decide = decide
        self.tick, self.clock = tick, clock
        self.requests: list[httpx.Request] = []
        self.bodies: list[list[str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        ids = event_ids(request.content)
        self.bodies.append(ids)
        if self.clock is not None:
            self.clock.now += self.tick  # the time a request takes
        step = self.decide(ids) if self.decide else self.steps.pop(0)
        if isinstance(step, Exception):
            if isinstance(step, httpx.RequestError):
                step.request = request
            raise step
        return httpx.Response(step) if isinstance(step, int) else step


def event_ids(body: bytes) -> list[str]:
    track = orjson.loads(body)["track"]
    return [item["eventId"] for group in track for item in group["payload"]]


def make_events(n: int, pad: int = 0) -> list[Item]:
    names = ("Product viewed", "Added to cart")
    events = []
    for i in range(n):
        item = {"eventId": f"e{i}", "userId": f"u{i}", "data": {"productId": "p" * (1 + pad)}}
        events.append(Item(names[i % 2], f"e{i}", orjson.dumps(item), i + 2))
    return events


def batch_of(events: Sequence[Item]) -> Batch:
    return Batch(0, events_of(events), body_of(events))


@dataclass
class Outcome:
    delivered: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    rejected_order: list[str] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    sender: Sender | None = None


def run_send(
    script: Script,
    batches: Batch | Sequence[Batch],
    *,
    policy: RetryPolicy | None = None,
    limiter_args: dict[str, Any] | None = None,
    clock: FakeClock | None = None,
    rng: Any = None,
    wall_clock: Callable[[], float] | None = None,
    target: Target = TARGET,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Outcome:
    """Send the batches one after another through a fresh Sender; the outcome keeps what the
    callbacks saw, the sleeps, and the sender (closed) for its stats. With `transport` the
    requests go there (a real wire) instead of to the script."""
    clock = clock or script.clock or FakeClock()
    sleep = RecordingSleep(clock)
    outcome = Outcome(sleeps=sleep.delays)

    async def delivered(batch: Batch, status: int) -> None:
        outcome.delivered.extend(batch.events.ids.to_pylist())
        outcome.statuses.append(status)

    async def rejected(events: Events, reason: str) -> None:
        for event_id in events.ids.to_pylist():
            outcome.rejected[event_id] = reason
            outcome.rejected_order.append(event_id)

    async def main() -> None:
        limiter = AdaptiveConcurrency(**(limiter_args or {}))
        extra: dict[str, Any] = {"wall_clock": wall_clock} if wall_clock else {}
        async with Sender(
            target,
            CREDENTIALS,
            policy=policy,
            limiter=limiter,
            transport=transport or httpx.MockTransport(script),
            sleep=sleep,
            clock=clock,
            rng=rng or random.Random(7),
            **extra,
        ) as sender:
            outcome.sender = sender
            for batch in [batches] if isinstance(batches, Batch) else batches:
                await sender.send_batch(batch, delivered, rejected)

    asyncio.run(main())
    return outcome


def stats(outcome: Outcome) -> Any:
    assert outcome.sender is not None
    return outcome.sender.stats


# --- the request -----------------------------------------------------------------------------


def test_request_carries_basic_auth_headers_and_the_body_and_no_api_key_in_url() -> None:
    script = Script([201])
    batch = batch_of(make_events(3))
    run_send(script, batch)
    (request,) = script.requests
    assert request.method == "POST"
    assert request.headers["Authorization"] == f"Basic {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("uploader/")
    assert request.headers["X-Intempt-Lib"].startswith("uploader/")
    assert "content-encoding" not in request.headers
    assert request.content == batch.body
    url = str(request.url)
    assert "apikey" not in url.lower() and KEY not in url and SECRET not in url
    assert request.url.raw_path.decode() == (
        f"/v1/acme%20org%2Feu/projects/shop%26co%3F/sources/{SOURCE}/track"
    )


# --- 2xx ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(201),
        httpx.Response(200, json={}),
        httpx.Response(204),
        httpx.Response(202, text="<html>accepted</html>"),
        httpx.Response(201, content=b"\xff\xfe not json"),
    ],
)
def test_any_2xx_with_any_body_is_delivered(response: httpx.Response) -> None:
    outcome = run_send(Script([response]), batch_of(make_events(4)))
    assert outcome.delivered == ["e0", "e1", "e2", "e3"]
    assert outcome.statuses == [response.status_code]
    assert outcome.sleeps == []
    assert stats(outcome).requests == 1
    assert stats(outcome).status_counts == Counter({response.status_code: 1})


# --- retries ---------------------------------------------------------------------------------


def test_503_is_retried_with_full_jitter_backoff() -> None:
    outcome = run_send(Script([503, 502, 500, 201]), batch_of(make_events(2)), rng=Ceiling())
    assert outcome.delivered == ["e0", "e1"]
    assert outcome.sleeps == [0.5, 1.0, 2.0]  # base * 2**retry, the ceiling of the jitter
    s = stats(outcome)
    assert (s.requests, s.retries) == (4, 3)
    assert s.status_counts == Counter({503: 1, 502: 1, 500: 1, 201: 1})


def test_backoff_delays_stay_within_the_jitter_bounds() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    outcome = run_send(Script([503] * 8 + [201]), batch_of(make_events(1)), policy=policy)
    bounds = [0.5, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    assert len(outcome.sleeps) == len(bounds)
    for delay, bound in zip(outcome.sleeps, bounds, strict=True):
        assert 0.0 <= delay <= bound
    assert len(set(outcome.sleeps)) > 1  # jittered, not fixed


@given(retry=st.integers(0, 200), seed=st.integers(0, 2**32))
def test_jitter_is_between_zero_and_the_capped_exponential(retry: int, seed: int) -> None:
    policy = RetryPolicy()
    delay = policy.delay(retry, None, random.Random(seed))
    assert 0.0 <= delay <= min(30.0, 0.5 * 2**retry)
    assert policy.delay(retry, 45.0, random.Random(seed)) == 45.0


def test_retry_after_seconds_is_honoured() -> None:
    steps: list[Step] = [httpx.Response(429, headers={"Retry-After": "7"}), 201]
    outcome = run_send(Script(steps), batch_of(make_events(2)), rng=Ceiling())
    assert outcome.sleeps == [7.0]
    assert outcome.delivered == ["e0", "e1"]


def test_retry_after_shorter_than_the_jitter_does_not_shorten_it() -> None:
    steps: list[Step] = [503, 503, httpx.Response(503, headers={"Retry-After": "0"}), 201]
    outcome = run_send(Script(steps), batch_of(make_events(1)), rng=Ceiling())
    assert outcome.sleeps == [0.5, 1.0, 2.0]


def test_retry_after_http_date_is_measured_against_the_servers_date() -> None:
    headers = {
        "Date": "Wed, 21 Oct 2015 07:28:00 GMT",
        "Retry-After": "Wed, 21 Oct 2015 07:28:12 GMT",
    }
    outcome = run_send(
        Script([httpx.Response(503, headers=headers), 201]),
        batch_of(make_events(1)),
        rng=Ceiling(),
        wall_clock=lambda: 0.0,  # a client clock far off: the server's Date wins
    )
    assert outcome.sleeps == [12.0]


def test_retry_after_http_date_without_a_date_header_uses_the_wall_clock() -> None:
    at = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:20 GMT"}
    outcome = run_send(
        Script([httpx.Response(429, headers=headers), 201]),
        batch_of(make_events(1)),
        rng=Ceiling(),
        wall_clock=lambda: at,
    )
    assert outcome.sleeps == [20.0]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # a date in the past: no wait
        ("Wed, 21 Oct 2015 07:29:00 GMT", 60.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=1445412480.0) == expected


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadTimeout("timed out"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ReadError("connection reset by peer"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
def test_timeouts_and_connection_errors_are_retried(error: Exception) -> None:
    outcome = run_send(Script([error, error, 201]), batch_of(make_events(3)), rng=Ceiling())
    assert outcome.delivered == ["e0", "e1", "e2"]
    assert outcome.sleeps == [0.5, 1.0]
    s = stats(outcome)
    assert (s.requests, s.retries) == (3, 2)
    assert s.error_counts == Counter({type(error).__name__: 2})


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    outcome = run_send(Script([status, 201]), batch_of(make_events(1)))
    assert outcome.delivered == ["e0"]
    assert stats(outcome).retries == 1


def test_transient_auto_event_400_is_retried_whole_not_bisected() -> None:
    transient = httpx.Response(
        400, json={"error": "Can't create a collection for auto-event Added to cart"}
    )
    script = Script([transient, transient, 201])
    outcome = run_send(script, batch_of(make_events(6)))
    assert [sorted(ids) for ids in script.bodies] == [[f"e{i}" for i in range(6)]] * 3
    assert outcome.delivered == [f"e{i}" for i in range(6)]
    assert outcome.rejected == {}
    assert stats(outcome).splits == 0


def test_retries_stop_after_max_retry_time_with_a_retryable_error() -> None:
    clock = FakeClock()
    script = Script(decide=lambda ids: 503, tick=1.0, clock=clock)
    policy = RetryPolicy(max_retry_time=120.0)
    with pytest.raises(SendError) as caught:
        run_send(script, batch_of(make_events(5)), policy=policy, clock=clock)
    error = caught.value
    assert error.retryable
    assert error.status == 503
    attempts = len(script.requests)
    spent = clock.now - 1000.0
    assert 120.0 - 30.0 < spent <= 120.0  # gives up when the next wait would pass the budget
    text = str(error)
    assert "retries exhausted" in text
    assert f"after {attempts} attempts" in text
    assert "max retry time 120 s" in text
    assert "last: 503" in text


def test_exhausted_after_timeouts_is_retryable_and_names_the_error() -> None:
    clock = FakeClock()
    script = Script(decide=lambda ids: httpx.ReadTimeout("timed out"), tick=60.0, clock=clock)
    with pytest.raises(SendError) as caught:
        run_send(script, batch_of(make_events(1)), clock=clock)
    assert caught.value.retryable
    assert caught.value.status is None
    assert "ReadTimeout" in str(caught.value)
    assert clock.now - 1000.0 <= 600.0 + 60.0


def test_exhausted_after_transient_400_stays_retryable() -> None:
    transient = httpx.Response(400, json={"error": "Can't create a collection for auto-event"})
    policy = RetryPolicy(max_retry_time=5.0)
    with pytest.raises(SendError) as caught:
        run_send(Script(decide=lambda ids: transient), batch_of(make_events(2)), policy=policy)
    assert caught.value.status == 400
    assert caught.value.retryable


def test_a_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    script = Script([httpx.Response(429, headers={"Retry-After": "3600"})])
    with pytest.raises(SendError, match="asked to wait 3600 s") as caught:
        run_send(script, batch_of(make_events(1)))
    assert len(script.requests) == 1
    assert caught.value.retryable
    assert caught.value.retry_after == 3600.0


def test_the_key_never_appears_in_error_text_even_when_the_api_echoes_it() -> None:
    echo = f"bad gateway for key {KEY}; Authorization: Basic {TOKEN}; secret {SECRET}"
    policy = RetryPolicy(max_retry_time=3.0)
    with pytest.raises(SendError) as caught:
        run_send(
            Script(decide=lambda ids: httpx.Response(502, text=echo)),
            batch_of(make_events(1)),
            policy=policy,
        )
    assert_no_key(str(caught.value), caught.value.body, repr(caught.value))

    with pytest.raises(SendError) as caught:
        run_send(Script([httpx.Response(401, json={"error": echo})]), batch_of(make_events(1)))
    assert_no_key(str(caught.value), caught.value.body, repr(caught.value))

    error = httpx.ConnectError(f"cannot reach https://x/?apiKey={KEY}")
    with pytest.raises(SendError) as caught:
        run_send(Script(decide=lambda ids: error), batch_of(make_events(1)), policy=policy)
    assert_no_key(str(caught.value), caught.value.body)

    outcome = run_send(
        Script([httpx.Response(400, json={"error": echo})]), batch_of(make_events(1))
    )
    assert_no_key(*outcome.rejected.values())
    assert "<redacted>" in outcome.rejected["e0"]


def assert_no_key(*texts: str) -> None:
    for text in texts:
        for form in (KEY, SECRET, TOKEN):
            assert form not in text


def test_unknown_exceptions_propagate_without_retry() -> None:
    script = Script([ValueError("a bug"), 201])
    with pytest.raises(ValueError, match="a bug"):
        run_send(script, batch_of(make_events(1)))
    assert len(script.requests) == 1


def test_a_failing_callback_propagates_and_is_not_retried() -> None:
    script = Script([201, 201])

    async def main() -> None:
        async def boom(batch: Batch, status: int) -> None:
            raise OSError("disk full")

        async def never(events: Events, reason: str) -> None:
            raise AssertionError

        async with Sender(
            TARGET,
            CREDENTIALS,
            transport=httpx.MockTransport(script),
            sleep=RecordingSleep(FakeClock()),
        ) as sender:
            await sender.send_batch(batch_of(make_events(2)), boom, never)

    with pytest.raises(OSError, match="disk full"):
        asyncio.run(main())
    assert len(script.requests) == 1


# --- auth and address --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_stops_after_exactly_one_request(status: int) -> None:
    body = {"error": "Unauthorized: API key not accepted"}
    script = Script([httpx.Response(status, json=body), 201, 201])
    with pytest.raises(SendError) as caught:
        run_send(script, batch_of(make_events(8)))
    assert len(script.requests) == 1
    error = caught.value
    assert error.status == status
    assert not error.retryable
    text = str(error)
    assert "API key" in text
    assert "'acme org/eu'" in text and "'shop&co?'" in text and SOURCE in text
    assert "Unauthorized: API key not accepted" in text
    assert_no_key(text, repr(error), error.body)


@pytest.mark.parametrize("status", [404, 405])
def test_a_wrong_address_stops_instead_of_rejecting_every_event(status: int) -> None:
    script = Script([status] * 20)
    with pytest.raises(SendError, match="no track endpoint") as caught:
        run_send(script, batch_of(make_events(8)))
    assert len(script.requests) == 1
    assert not caught.value.retryable


# --- 413: split ------------------------------------------------------------------------------


def too_large_above(limit: int, events: Sequence[Item]) -> Callable[[list[str]], Step]:
    """A gateway that refuses bodies over `limit` bytes."""

    def decide(ids: list[str]) -> Step:
        body = body_of([e for e in events if e.event_id in set(ids)])
        if len(body) > limit:
            return httpx.Response(413, json={"error": f"Request body exceeds {limit} bytes"})
        return 201

    return decide


def test_413_splits_until_the_halves_fit() -> None:
    events = make_events(10)
    limit = len(body_of(events[:3])) + 1
    script = Script(decide=too_large_above(limit, events))
    outcome = run_send(script, batch_of(events))
    assert outcome.delivered == [f"e{i}" for i in range(10)]
    assert outcome.rejected == {}
    assert [len(ids) for ids in script.bodies] == [10, 5, 2, 3, 5, 2, 3]
    assert stats(outcome).status_counts == Counter({413: 3, 201: 4})
    assert (stats(outcome).retries, stats(outcome).splits) == (0, 3)


def test_a_single_event_too_large_is_rejected_and_the_rest_delivered() -> None:
    events = make_events(7)
    events[3] = make_events(4, pad=5000)[3]  # e3 with a 5 KB productId
    limit = len(body_of(events[:2])) + 10
    outcome = run_send(Script(decide=too_large_above(limit, events)), batch_of(events))
    assert outcome.delivered == ["e0", "e1", "e2", "e4", "e5", "e6"]
    assert outcome.rejected == {"e3": TOO_LARGE}


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 400), min_size=1, max_size=24),
    limit=st.integers(150, 1500),
)
def test_413_split_delivers_every_event_exactly_once_or_rejects_it(
    sizes: list[int], limit: int
) -> None:
    events = [make_events(i + 1, pad=pad)[i] for i, pad in enumerate(sizes)]

    outcome = run_send(Script(decide=too_large_above(limit, events)), batch_of(events))
    fits = {e.event_id for e in events if len(body_of([e])) <= limit}
    assert Counter(outcome.delivered) == Counter(fits)
    assert set(outcome.rejected) == {e.event_id for e in events} - fits
    assert set(outcome.rejected.values()) <= {TOO_LARGE}


# --- other 4xx: bisect -------------------------------------------------------------------------


def refuse(bad: set[str], status: int = 400) -> Callable[[list[str]], Step]:
    def decide(ids: list[str]) -> Step:
        if bad & set(ids):
            return httpx.Response(status, json={"error": MISSING_ID})
        return 201

    return decide


def test_bisect_delivers_the_14_good_items_and_rejects_the_2_bad_ones() -> None:
    events = make_events(16)
    outcome = run_send(Script(decide=refuse({"e3", "e11"})), batch_of(events))
    good = [f"e{i}" for i in range(16) if i not in (3, 11)]
    assert outcome.delivered == good  # in input order, each once
    assert outcome.rejected == {
        "e3": f"the API refused this event (400): {MISSING_ID}",
        "e11": f"the API refused this event (400): {MISSING_ID}",
    }
    assert outcome.sleeps == []
    assert stats(outcome).retries == 0


@pytest.mark.parametrize("status", [400, 409, 422])
def test_other_4xx_are_bisected_like_400(status: int) -> None:
    outcome = run_send(Script(decide=refuse({"e1"}, status)), batch_of(make_events(4)))
    assert outcome.delivered == ["e0", "e2", "e3"]
    assert outcome.rejected == {"e1": f"the API refused this event ({status}): {MISSING_ID}"}


@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (httpx.Response(400, json={"message": "timestamp before 2010"}), "timestamp before 2010"),
        (httpx.Response(400, json={"errors": ["a", "b"]}), '["a","b"]'),
        (httpx.Response(400, text="plain\n  text reason"), "plain text reason"),
        (httpx.Response(400), "HTTP 400 with an empty body"),
        (httpx.Response(400, json={"error": "x" * 1000}), "x" * 299 + "…"),
    ],
)
def test_reject_reason_is_the_apis_message_made_readable(
    response: httpx.Response, reason: str
) -> None:
    outcome = run_send(Script([response]), batch_of(make_events(1)))
    assert outcome.rejected == {"e0": f"the API refused this event (400): {reason}"}


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(1, 24))
def test_bisect_delivers_exactly_the_good_items_and_rejects_exactly_the_bad(
    data: st.DataObject, n: int
) -> None:
    bad = data.draw(st.sets(st.integers(0, n - 1)))
    bad_ids = {f"e{i}" for i in bad}
    script = Script(decide=refuse(bad_ids))
    outcome = run_send(script, batch_of(make_events(n)))
    assert outcome.delivered == [f"e{i}" for i in range(n) if i not in bad]
    assert sorted(outcome.rejected_order) == sorted(bad_ids)  # each rejected once
    assert len(script.requests) <= 2 * n - 1  # a full binary tree over n leaves


def test_bisect_in_a_stream_of_batches_from_pack_batches() -> None:
    events = make_events(30)
    batches = list(pack_batches([events_of(events)], batch_size=8, max_bytes=100_000))
    outcome = run_send(Script(decide=refuse({"e5", "e29"})), batches)
    assert outcome.delivered == [e.event_id for e in events if e.event_id not in {"e5", "e29"}]
    assert set(outcome.rejected) == {"e5", "e29"}


# --- the sender and its limiter ------------------------------------------------------------------


def test_a_429_through_the_sender_halves_its_limiter_and_successes_restore_it() -> None:
    outcome = run_send(
        Script([429] + [201] * 5),
        [batch_of(make_events(1))] * 5,
        limiter_args={"max_concurrency": 4, "recover_after": 2},
    )
    assert outcome.sender is not None
    limiter = outcome.sender.limiter
    assert limiter.generation == 1  # halved once: 4 -> 2
    assert limiter.limit == 4  # +1 after 2 successes, twice
    assert stats(outcome).status_counts == Counter({429: 1, 201: 5})


def test_the_sender_keeps_requests_in_flight_within_its_limiter() -> None:
    peak = {"now": 0, "max": 0}

    async def handle(request: httpx.Request) -> httpx.Response:
        peak["now"] += 1
        peak["max"] = max(peak["max"], peak["now"])
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        peak["now"] -= 1
        return httpx.Response(201)

    async def main() -> int:
        delivered: list[int] = []

        async def on_delivered(batch: Batch, status: int) -> None:
            delivered.append(batch.seq)

        async def on_rejected(events: Events, reason: str) -> None:
            raise AssertionError(reason)

        limiter = AdaptiveConcurrency(3)
        async with Sender(
            TARGET, CREDENTIALS, limiter=limiter, transport=httpx.MockTransport(handle)
        ) as sender:
            batches = [
                Batch(i, events_of([e]), body_of([e])) for i, e in enumerate(make_events(12))
            ]
            await asyncio.gather(
                *(sender.send_batch(b, on_delivered, on_rejected) for b in batches)
            )
            assert limiter.in_flight == 0
        return len(delivered)

    assert asyncio.run(main()) == 12
    assert peak["max"] == 3


# --- the retry policy's settings -----------------------------------------------------------------


@pytest.mark.parametrize("field_name", ["max_retry_time", "base_delay", "max_delay", "timeout"])
def test_retry_policy_refuses_non_positive_values(field_name: str) -> None:
    with pytest.raises(ConfigError, match=field_name):
        RetryPolicy(**{field_name: 0})


# --- what halves the limit, by mode --------------------------------------------------------------

# Signs of an overloaded API, or of a way to it that is: they halve an adaptive limit only.
OVERLOADS: dict[str, Callable[[], Step]] = {
    "408": lambda: 408,
    "500": lambda: 500,
    "502": lambda: 502,
    "503": lambda: 503,
    "504": lambda: 504,
    "read-timeout": lambda: httpx.ReadTimeout("no answer in time"),
    "connect-timeout": lambda: httpx.ConnectTimeout("no connection in time"),
    "connect-error": lambda: httpx.ConnectError("cannot connect"),
    "read-error": lambda: httpx.ReadError("reset by peer"),
    "write-error": lambda: httpx.WriteError("broken pipe"),
    "dropped": lambda: httpx.RemoteProtocolError("closed without an answer"),
}


def limit_after(step: Step, *, adaptive: bool) -> tuple[int, int]:
    """(limit, generation) of a limiter at 8 after one `step` and then a 201."""
    limiter_args = {"max_concurrency": 8, "adaptive": adaptive, "start": 8}
    outcome = run_send(Script([step, 201]), batch_of(make_events(2)), limiter_args=limiter_args)
    assert outcome.delivered == ["e0", "e1"]
    assert outcome.sender is not None
    return outcome.sender.limiter.limit, outcome.sender.limiter.generation


@pytest.mark.parametrize("name", OVERLOADS)
def test_in_adaptive_mode_overloads_and_failed_exchanges_halve_the_limit(name: str) -> None:
    assert limit_after(OVERLOADS[name](), adaptive=True) == (4, 1)


@pytest.mark.parametrize("name", OVERLOADS)
def test_in_pinned_mode_they_leave_the_limit_alone(name: str) -> None:
    assert limit_after(OVERLOADS[name](), adaptive=False) == (8, 0)


@pytest.mark.parametrize("adaptive", [True, False], ids=["adaptive", "pinned"])
def test_a_429_halves_the_limit_in_both_modes(adaptive: bool) -> None:
    assert limit_after(429, adaptive=adaptive) == (4, 1)


@pytest.mark.parametrize("adaptive", [True, False], ids=["adaptive", "pinned"])
def test_the_transient_400_never_halves_the_limit(adaptive: bool) -> None:
    transient = httpx.Response(
        400, json={"error": "Can't create a collection for auto-event Product viewed"}
    )
    assert limit_after(transient, adaptive=adaptive) == (8, 0)


@pytest.mark.parametrize("adaptive", [True, False], ids=["adaptive", "pinned"])
def test_a_refused_event_does_not_halve_the_limit(adaptive: bool) -> None:
    outcome = run_send(
        Script(decide=refuse({"e1"})),
        batch_of(make_events(4)),
        limiter_args={"max_concurrency": 8, "adaptive": adaptive, "start": 8},
    )
    assert outcome.delivered == ["e0", "e2", "e3"]
    assert outcome.sender is not None
    assert (outcome.sender.limiter.limit, outcome.sender.limiter.generation) == (8, 0)


# --- answers that are not the API's -----------------------------------------------------------

LOGIN_PAGE = (
    "<!doctype html><html><head><title>Sign in - Acme SSO</title></head><body><form "
    'method="post" action="/login"><input name="user"><input name="password" type="password">'
    "</form></body></html>"
)


def web_page_error(url: str) -> str:
    return (
        f"{url} answered 200 with a web page ({LOGIN_PAGE}), not the track API's answer, so "
        "nothing was stored; check --base-url (a login page, a proxy or a web site answered)"
    )


def test_a_login_page_answered_200_stops_the_run_naming_the_address() -> None:
    script = Script([httpx.Response(200, html=LOGIN_PAGE)])
    with pytest.raises(SendError) as caught:
        run_send(script, batch_of(make_events(3)))
    assert str(caught.value) == web_page_error(TARGET.track_url)
    assert caught.value.status == 200
    assert not caught.value.retryable
    assert len(script.requests) == 1  # not retried


def test_a_201_whose_body_is_not_json_is_delivered() -> None:
    created = httpx.Response(201, headers={"Content-Type": "application/json"}, content=b"OK")
    outcome = run_send(Script([created]), batch_of(make_events(3)))
    assert outcome.delivered == ["e0", "e1", "e2"]
    assert outcome.statuses == [201]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_stops_the_run_naming_where_it_points_and_is_not_followed(status: int) -> None:
    elsewhere = "https://sso.acme.test/login?next=/track"
    script = Script([httpx.Response(status, headers={"Location": elsewhere}), 201])
    with pytest.raises(SendError) as caught:
        run_send(script, batch_of(make_events(2)))
    assert str(caught.value) == (
        f"the API answered {status}, a redirect to {elsewhere}: the uploader does not follow "
        "redirects (the events would go to an address nobody checked); check --base-url"
    )
    assert [str(r.url) for r in script.requests] == [TARGET.track_url]


def test_a_connection_reset_in_the_middle_of_the_answer_is_retried_and_delivered() -> None:
    head = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    with ScriptedApi([Reset(head + b'{"status": "cre'), answer("201 Created")]) as api:
        outcome = run_send(
            Script(),
            batch_of(make_events(3)),
            rng=Ceiling(),
            target=Target(api.base_url, TARGET.org, TARGET.project, SOURCE),
            transport=Http11Transport(max_connections=2),  # the real wire, not a mock
        )
        bodies = api.bodies
    assert outcome.delivered == ["e0", "e1", "e2"]
    assert outcome.sleeps == [0.5]
    assert stats(outcome).error_counts == Counter({"ReadError": 1})
    assert len(bodies) == 2 and bodies[0] == bodies[1]  # the same request, sent again


class Share:
    """An rng whose jitter is always this share of its ceiling."""

    def __init__(self, share: float) -> None:
        self.share = share

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.share


@pytest.mark.parametrize(
    "headers",
    [
        {"Date": "Wed, 21 Oct 2015 07:28:00 GMT", "Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT"},
        {"Retry-After": "Wed, 21 Oct 2015 07:27:00 GMT"},  # against our own clock
    ],
    ids=["server-date", "wall-clock"],
)
def test_a_retry_after_in_the_past_adds_nothing_to_the_jittered_backoff(headers) -> None:
    outcome = run_send(
        Script([httpx.Response(503, headers=headers), 201]),
        batch_of(make_events(1)),
        rng=Share(0.25),
        wall_clock=lambda: 1445412480.0,  # Wed, 21 Oct 2015 07:28:00 GMT
    )
    assert outcome.sleeps == [0.125]  # a quarter of the first ceiling (0.5 s), nothing more
    assert outcome.delivered == ["e0"]


def test_a_retry_after_of_a_day_gives_up_at_once_saying_what_the_api_asked() -> None:
    busy = httpx.Response(429, headers={"Retry-After": "86400"}, json={"error": "Slow down"})
    script = Script([busy, 201])
    with pytest.raises(SendError) as caught:
        run_send(script, batch_of(make_events(3)), policy=RetryPolicy(max_retry_time=600))
    assert str(caught.value) == (
        "gave up on a batch of 3 events: retries exhausted after 1 attempt over 0 s (max "
        "retry time 600 s); last: 429 Slow down (the API asked to wait 86400 s)"
    )
    assert caught.value.retry_after == 86400.0
    assert len(script.requests) == 1  # no wait, no second try


def test_an_upload_answered_by_a_web_page_exits_3_and_records_nothing_delivered(
    write_csv, tmp_path, capsys, monkeypatch
) -> None:
    path = write_csv("ts,event,sku,user_id\n2024-05-02T14:38:24Z,view,S1,u1\n")
    state = tmp_path / "state.db"
    page = answer("200 OK", LOGIN_PAGE.encode(), Content_Type="text/html; charset=utf-8")
    monkeypatch.setenv("INTEMPT_API_KEY", KEY)
    with ScriptedApi([page]) as api:
        code = main(
            [
                "upload", str(path), "--base-url", api.base_url, "--org", "acme", "--project",
                "shop", "--source", SOURCE, "--state", str(state), "--quiet",
            ]
        )  # fmt: skip
        requests = len(api.bodies)
    out, err = capsys.readouterr()
    assert "Traceback" not in out
    track_url = Target(api.base_url, "acme", "shop", SOURCE).track_url
    assert code == 3
    assert err == (
        f"uploader: aborted: {web_page_error(track_url)}\n"
        "Delivered rows are recorded; run the same command to resume.\n"
    )
    assert requests == 1
    db = sqlite3.connect(state)
    sent = db.execute("SELECT COALESCE(SUM(n), 0) FROM acks WHERE kind='sent'").fetchone()[0]
    files = db.execute("SELECT status, delivered FROM files").fetchall()
    runs = db.execute("SELECT status FROM runs").fetchall()
    db.close()
    assert (sent, files, runs) == (0, [("partial", 0)], [("aborted",)])
