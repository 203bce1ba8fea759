"""Limits and faults on request, through real HTTP, made repeatable by the seed."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import orjson
import pytest

from uploader.sandbox import Sandbox
from uploader.sandbox.server import TRANSIENT_400

from .wire import body, item, post

MakeSandbox = Callable[..., Sandbox]


def test_body_over_max_body_bytes_is_413_and_not_stored(
    make_sandbox: MakeSandbox, client: httpx.Client
) -> None:
    small = body(item())
    limit = len(orjson.dumps(small))
    sb = make_sandbox(max_body_bytes=limit)

    at_limit = post(client, sb, small)
    over = post(client, sb, body(item(), item()))

    assert (at_limit.status_code, over.status_code) == (201, 413)
    assert sb.stats()["events"] == 1
    assert sb.stats()["status_counts"] == {"201": 1, "413": 1}


@pytest.mark.parametrize(("rate", "retry_after"), [(1, "1"), (0.5, "2")])
def test_rate_limit_answers_429_with_retry_after(
    make_sandbox: MakeSandbox, client: httpx.Client, rate: float, retry_after: str
) -> None:
    sb = make_sandbox(rate_limit=rate)

    first = post(client, sb, body())
    second = post(client, sb, body())

    assert first.status_code == 201
    assert second.status_code == 429
    assert second.headers["retry-after"] == retry_after
    assert sb.stats()["events"] == 1


def test_rate_limit_allows_a_burst_of_one_second(
    make_sandbox: MakeSandbox, client: httpx.Client
) -> None:
    sb = make_sandbox(rate_limit=5)

    statuses = [post(client, sb, body()).status_code for _ in range(6)]

    assert statuses == [201] * 5 + [429]


def test_error_rate_one_answers_503_and_stores_nothing(
    make_sandbox: MakeSandbox, client: httpx.Client
) -> None:
    sb = make_sandbox(error_rate=1.0)

    response = post(client, sb, body())

    assert response.status_code == 503
    assert sb.stats()["events"] == 0


def test_transient_400_is_the_real_apis_message_and_stores_nothing(
    make_sandbox: MakeSandbox, client: httpx.Client
) -> None:
    sb = make_sandbox(transient_400_rate=1.0)

    response = post(client, sb, body())

    assert (response.status_code, response.json()) == (400, {"error": TRANSIENT_400})
    assert TRANSIENT_400 == "Can't create a collection for auto-event"
    assert sb.stats()["events"] == 0


def test_drop_stores_the_events_then_hangs_up_unanswered(
    make_sandbox: MakeSandbox, client: httpx.Client
) -> None:
    sb = make_sandbox(drop_rate=1.0)

    with pytest.raises(httpx.RemoteProtocolError):
        post(client, sb, body(item(), item()))

    stats = sb.stats()
    assert (stats["events"], stats["dropped"], stats["requests"]) == (2, 1, 1)
    assert stats["status_counts"] == {}


def test_dropped_then_resent_batch_is_stored_twice(
    make_sandbox: MakeSandbox, client: httpx.Client
) -> None:
    # Seed 3 draws drop, then keep: the at-least-once case a client must expect.
    sb = make_sandbox(drop_rate=0.5, seed=3)
    payload = body(item(eventId="a"), item(eventId="b"))

    with pytest.raises(httpx.RemoteProtocolError):
        post(client, sb, payload)
    assert post(client, sb, payload).status_code == 201

    stats = sb.stats()
    assert (stats["events"], stats["unique_event_ids"], stats["duplicate_events"]) == (4, 2, 2)


def test_latency_delays_every_answer(make_sandbox: MakeSandbox, client: httpx.Client) -> None:
    sb = make_sandbox(latency_ms=50)

    started = time.perf_counter()
    response = post(client, sb, body())
    elapsed = time.perf_counter() - started

    assert response.status_code == 201
    assert elapsed >= 0.05


def _statuses(sb: Sandbox, client: httpx.Client, n: int) -> list[int]:
    out = []
    for _ in range(n):
        try:
            out.append(post(client, sb, body()).status_code)
        except httpx.RemoteProtocolError:
            out.append(0)  # dropped
    return out


def test_same_seed_replays_the_same_faults(make_sandbox: MakeSandbox, client: httpx.Client) -> None:
    options = {"error_rate": 0.3, "transient_400_rate": 0.3, "drop_rate": 0.3, "seed": 42}

    first = _statuses(make_sandbox(**options), client, 30)
    second = _statuses(make_sandbox(**options), client, 30)

    assert first == second
    assert {0, 201, 400, 503} <= set(first)  # every fault fired, and some requests passed


def test_error_rate_is_roughly_the_share_asked_for(
    make_sandbox: MakeSandbox, client: httpx.Client
) -> None:
    sb = make_sandbox(error_rate=0.5, seed=1)

    statuses = _statuses(sb, client, 100)

    assert 30 <= statuses.count(503) <= 70
    assert sb.stats()["status_counts"] == {"201": statuses.count(201), "503": statuses.count(503)}


# -- the order the real API applies them: auth, size, rate limit, faults, validation, drop ----


def test_auth_comes_before_every_fault(make_sandbox: MakeSandbox, client: httpx.Client) -> None:
    sb = make_sandbox(max_body_bytes=10, rate_limit=1, error_rate=1.0, drop_rate=1.0)

    answers = [post(client, sb, body(), auth=("sandbox", "wrong")).status_code for _ in range(2)]

    assert answers == [401, 401]


def test_size_comes_before_the_rate_limit(make_sandbox: MakeSandbox, client: httpx.Client) -> None:
    sb = make_sandbox(max_body_bytes=len(orjson.dumps(body(item()))), rate_limit=1)

    oversized = [post(client, sb, body(item(), item())).status_code for _ in range(2)]
    fits = post(client, sb, body(item()))

    assert oversized == [413, 413]
    assert fits.status_code == 201  # the 413s did not use up the rate limit


def test_rate_limit_comes_before_error_faults(
    make_sandbox: MakeSandbox, client: httpx.Client
) -> None:
    sb = make_sandbox(rate_limit=1, error_rate=1.0)

    assert [post(client, sb, body()).status_code for _ in range(2)] == [503, 429]


def test_faults_come_before_validation(make_sandbox: MakeSandbox, client: httpx.Client) -> None:
    sb = make_sandbox(transient_400_rate=1.0)

    response = post(client, sb, {"track": []})

    assert response.json() == {"error": TRANSIENT_400}


def test_a_refused_body_is_answered_not_dropped(
    make_sandbox: MakeSandbox, client: httpx.Client
) -> None:
    sb = make_sandbox(drop_rate=1.0)

    response = post(client, sb, {"track": []})

    assert response.status_code == 400
    assert sb.stats()["dropped"] == 0
