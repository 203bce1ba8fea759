"""The track endpoint's HTTP behaviour: auth, paths, keep-alive, storage and the /_sandbox pages."""

from __future__ import annotations

import base64
import http.client
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from uploader.errors import ConfigError
from uploader.sandbox import DEFAULT_API_KEY, DEFAULT_SOURCE, Sandbox

from .wire import body, item, post

# -- success and storage --------------------------------------------------------------------


def test_accepted_body_answers_201_with_empty_object(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    response = post(client, sandbox, body(item(), item()))

    assert response.status_code == 201
    assert response.content == b"{}"
    assert response.headers["content-type"] == "application/json"


def test_every_item_is_stored_with_its_request_name_and_body(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    first, second = item(eventId="a"), item(eventId="b", userId="other@example.com")
    post(client, sandbox, body(first))
    post(client, sandbox, body(second, name="Product ordered"))

    events = sandbox.events()

    assert [(e["name"], e["event_id"], e["item"]) for e in events] == [
        ("Added to cart", "a", first),
        ("Product ordered", "b", second),
    ]
    assert events[0]["request_id"] != events[1]["request_id"]
    assert events[0]["id"] < events[1]["id"]


def test_resent_events_are_stored_again_and_counted_as_duplicates(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    payload = body(item(eventId="x"), item(eventId="y"))
    post(client, sandbox, payload)
    post(client, sandbox, payload)
    post(client, sandbox, body(item(eventId="z")))

    stats = sandbox.stats()

    assert (stats["events"], stats["unique_event_ids"], stats["duplicate_events"]) == (5, 3, 2)
    assert stats["requests"] == 3
    assert stats["status_counts"] == {"201": 3}
    assert stats["bytes"] == 2 * len(orjson.dumps(payload)) + len(
        orjson.dumps(body(item(eventId="z")))
    )


def test_stats_events_and_reset_are_served_over_http_without_auth(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    post(client, sandbox, body(item(), item(), item()))
    base = sandbox.base_url

    stats = client.get(f"{base}/_sandbox/stats").json()
    page = client.get(f"{base}/_sandbox/events", params={"limit": 2}).json()
    rest = client.get(f"{base}/_sandbox/events", params={"after": page[-1]["id"]}).json()

    assert stats == sandbox.stats()
    assert stats["events"] == 3
    assert [e["id"] for e in page + rest] == [e["id"] for e in sandbox.events()]
    assert len(page) == 2 and len(rest) == 1
    assert client.post(f"{base}/_sandbox/reset").json() == {}
    assert sandbox.stats()["events"] == sandbox.stats()["requests"] == 0
    assert client.get(f"{base}/_sandbox/events").json() == []


@pytest.mark.parametrize("query", ["limit=0", "limit=x", "after=-1", "limit=100000"])
def test_bad_events_page_is_400(sandbox: Sandbox, client: httpx.Client, query: str) -> None:
    response = client.get(f"{sandbox.base_url}/_sandbox/events?{query}")

    assert response.status_code == 400
    assert "error" in response.json()


def test_connection_is_kept_alive_across_requests(sandbox: Sandbox) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=5)
    path = sandbox.track_url.removeprefix(sandbox.base_url)
    raw = orjson.dumps(body())
    headers = {"Content-Type": "application/json", "Authorization": _basic(DEFAULT_API_KEY)}
    try:
        answers = []
        for _ in range(3):
            conn.request("POST", path, body=raw, headers=headers)
            response = conn.getresponse()
            response.read()
            assert conn.sock is not None
            answers.append((response.status, response.will_close, conn.sock.getsockname()))
    finally:
        conn.close()

    # Same local address each time: one TCP connection served all three requests.
    assert len(set(answers)) == 1
    assert answers[0][:2] == (201, False)


def test_concurrent_requests_are_all_stored(sandbox: Sandbox) -> None:
    def send() -> None:
        with httpx.Client() as own:
            for _ in range(5):
                assert post(own, sandbox, body(item(), item())).status_code == 201

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sandbox.stats()["events"] == 40


def test_db_file_keeps_events_across_restarts(tmp_path: Path, client: httpx.Client) -> None:
    db = str(tmp_path / "sandbox.sqlite")
    with Sandbox(db=db) as first:
        post(client, first, body(item(eventId="kept")))

    with Sandbox(db=db) as second:
        assert [e["event_id"] for e in second.events()] == ["kept"]
        assert second.stats()["requests"] == 1


def test_null_mode_counts_but_stores_nothing(
    make_sandbox: Callable[..., Sandbox], client: httpx.Client
) -> None:
    sb = make_sandbox(null=True)
    post(client, sb, body(item(), item(timestamp=10**16)))
    post(client, sb, body(item(userId="  ")))

    stats = sb.stats()

    assert (stats["requests"], stats["events"], stats["rewritten_timestamps"]) == (2, 2, 1)
    assert stats["status_counts"] == {"201": 1, "400": 1}
    assert stats["unique_event_ids"] is None  # would need every id in memory
    assert sb.events() == []


# -- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [("sandbox", "wrong"), ("other", "local-secret"), ("sandbox.local-secret", "")],
    ids=["secret", "prefix", "dot-form"],
)
def test_wrong_key_is_401_and_stores_nothing(
    sandbox: Sandbox, client: httpx.Client, auth: tuple[str, str]
) -> None:
    response = post(client, sandbox, body(), auth=auth)

    assert response.status_code == 401
    assert sandbox.stats()["events"] == 0


def test_missing_authorization_is_401(sandbox: Sandbox, client: httpx.Client) -> None:
    response = client.post(sandbox.track_url, json=body())

    assert response.status_code == 401


@pytest.mark.parametrize("part", ["org", "project", "source"])
def test_wrong_org_project_or_source_is_401(
    sandbox: Sandbox, client: httpx.Client, part: str
) -> None:
    url = sandbox.track_url.replace(getattr(sandbox, part), "other1")

    response = post(client, sandbox, body(), url=url)

    assert response.status_code == 401
    assert sandbox.stats()["status_counts"] == {"401": 1}


def test_org_and_project_are_url_decoded(
    make_sandbox: Callable[..., Sandbox], client: httpx.Client
) -> None:
    sb = make_sandbox(org="Acme Inc/EU", project="shop & co")

    response = post(client, sb, body())

    assert "/v1/Acme%20Inc%2FEU/projects/shop%20%26%20co/sources/" in sb.track_url
    assert response.status_code == 201


def test_key_in_query_is_accepted_but_counted_as_a_leak(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    response = client.post(sandbox.track_url, json=body(), params={"apiKey": DEFAULT_API_KEY})
    post(client, sandbox, body())

    assert response.status_code == 201
    assert sandbox.stats()["key_in_query"] == 1


def test_wrong_key_in_query_is_401_and_still_counted(
    sandbox: Sandbox, client: httpx.Client
) -> None:
    response = client.post(sandbox.track_url, json=body(), params={"apiKey": "sandbox.nope"})

    assert response.status_code == 401
    assert sandbox.stats()["key_in_query"] == 1


def test_key_in_query_never_reaches_the_log(
    sandbox: Sandbox, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="uploader.sandbox")
    secret = DEFAULT_API_KEY.partition(".")[2]

    client.post(sandbox.track_url, json=body(), params={"apiKey": DEFAULT_API_KEY})
    client.post(sandbox.track_url, json={}, params={"x": "1", "APIKEY": DEFAULT_API_KEY})

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert logged.count("apiKey=<redacted>") + logged.count("APIKEY=<redacted>") == 2
    assert secret not in logged


# -- paths and framing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/track",
        "/v1/sandbox-org/projects/sandbox-project/track",
        f"/v1/sandbox-org/projects/sandbox-project/sources/{DEFAULT_SOURCE}/track/",
        f"/v2/sandbox-org/projects/sandbox-project/sources/{DEFAULT_SOURCE}/track",
    ],
)
def test_unknown_path_is_404(sandbox: Sandbox, client: httpx.Client, path: str) -> None:
    response = post(client, sandbox, body(), url=sandbox.base_url + path)

    assert response.status_code == 404
    assert sandbox.stats()["events"] == 0


def test_get_on_track_is_405(sandbox: Sandbox, client: httpx.Client) -> None:
    response = client.get(sandbox.track_url)

    assert (response.status_code, response.headers["allow"]) == (405, "POST")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "text/plain"}, 415),
        ({"Content-Type": "application/json; charset=utf-8"}, 201),
        ({"Content-Encoding": "gzip"}, 415),
    ],
)
def test_content_headers_are_checked(
    sandbox: Sandbox, client: httpx.Client, headers: dict[str, str], status: int
) -> None:
    response = post(client, sandbox, body(), headers=headers)

    assert response.status_code == status


def test_auth_is_checked_before_the_body_framing(sandbox: Sandbox, client: httpx.Client) -> None:
    response = post(
        client, sandbox, body(), auth=("sandbox", "wrong"), headers={"Content-Encoding": "gzip"}
    )

    assert response.status_code == 401


def test_chunked_body_is_411(sandbox: Sandbox, client: httpx.Client) -> None:
    raw = orjson.dumps(body())

    response = client.post(
        sandbox.track_url,
        content=iter([raw]),  # an iterator has no length: httpx sends it chunked
        headers={"Content-Type": "application/json", "Authorization": _basic(DEFAULT_API_KEY)},
    )

    assert response.status_code == 411


# -- the Python object ----------------------------------------------------------------------


def test_defaults_look_like_real_credentials() -> None:
    assert re.fullmatch(r"\d{19}", DEFAULT_SOURCE)
    prefix, dot, secret = DEFAULT_API_KEY.partition(".")
    assert prefix and dot and secret


def test_urls_and_stats_outside_the_with_block() -> None:
    sb = Sandbox()
    with pytest.raises(RuntimeError, match="not running"):
        _ = sb.base_url
    with sb:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", sb.base_url)
        assert sb.track_url == (
            f"{sb.base_url}/v1/sandbox-org/projects/sandbox-project/sources/{DEFAULT_SOURCE}/track"
        )
        with httpx.Client() as own:
            post(own, sb, body())
    assert sb.stats()["events"] == 1  # the last stats survive stop()
    with pytest.raises(RuntimeError, match="not running"):
        sb.events()


def test_stop_ends_idle_keep_alive_connections() -> None:
    with Sandbox() as sb, httpx.Client() as own:
        post(own, sb, body())  # leaves a pooled connection open on the server
    # Reaching here means stop() did not wait for the client to hang up.


@pytest.mark.parametrize(
    "options",
    [
        {"org": ""},
        {"project": "  "},
        {"source": 7340000000000000001},
        {"source": "7.34e18"},
        {"api_key": "no-dot"},
        {"api_key": ".secret"},
        {"port": 70000},
        {"db": "x.sqlite", "null": True},
        {"error_rate": 1.5},
        {"drop_rate": -0.1},
        {"transient_400_rate": float("nan")},
        {"rate_limit": 0},
        {"max_body_bytes": 0},
        {"latency_ms": -1},
        {"seed": "7"},
    ],
)
def test_bad_options_raise_config_error(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Sandbox(**options)  # type: ignore[arg-type]


def _basic(key: str) -> str:
    prefix, _, secret = key.partition(".")
    return "Basic " + base64.b64encode(f"{prefix}:{secret}".encode()).decode()
