"""The sandbox's HTTP side: the track endpoint, its auth, its faults, and the /_sandbox pages.

Built on the standard library's ThreadingHTTPServer (HTTP/1.1, keep-alive): a thread per
connection is plenty for one uploader, and it lets a "drop" close a connection unanswered.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import logging
import math
import re
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from uploader.sandbox.faults import Dice, Faults
from uploader.sandbox.rules import Event, Rejection, check_body
from uploader.sandbox.store import Store
from uploader.version import __version__

LOG = logging.getLogger("uploader.sandbox")

# Bodies past this are refused unread: far above any real batch, and the sandbox must not
# buffer gigabytes because a client sent a wrong Content-Length.
HARD_BODY_LIMIT = 64 * 1024 * 1024

# Idle keep-alive connections are closed after this, so a vanished client frees its thread.
IDLE_TIMEOUT_S = 60.0

# The 400 the real API gives on concurrent first use of an event name; clients must retry it.
TRANSIENT_400 = "Can't create a collection for auto-event"

# Shape of the only API path: /v1/{org}/projects/{project}/sources/{sourceId}/track.
TRACK_PATH = "/v1/{org}/projects/{project}/sources/{sourceId}/track"

# Whatever follows apiKey= in a logged request line: the key must never reach a log.
KEY_IN_TEXT = re.compile(r"(apikey=)[^&\s'\"]*", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    """The org, project, source and key this sandbox answers to."""

    org: str
    project: str
    source: str
    api_key: str = ""  # never shown: see __repr__

    def __repr__(self) -> str:
        return f"Target(org={self.org!r}, project={self.project!r}, source={self.source!r})"


@dataclass(frozen=True)
class Reply:
    """What to answer one track request. `drop`: store the events, then hang up unanswered."""

    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()
    events: Sequence[Event] = ()
    drop: bool = False
    close: bool = False


class TrackApi:
    """The policy of one track request, in the real API's order: auth, size, rate limit,
    faults, validation, store, then drop or 201. Also records every answer in the store."""

    def __init__(self, target: Target, faults: Faults, store: Store) -> None:
        self.target = target
        self.faults = faults
        self.store = store
        self._dice = Dice(faults)
        prefix, _, secret = target.api_key.partition(".")
        self._basic = base64.b64encode(f"{prefix}:{secret}".encode()).decode()

    def answer(
        self, path: str, query: str, authorization: str, content_type: str, body: bytes | Reply
    ) -> Reply:
        """`body` is a Reply when the handler could not read it (e.g. chunked)."""
        received_at = time.time_ns() // 1_000_000
        query_key = parse_qs(query, keep_blank_values=True).get("apiKey", [None])[0]
        reply = self._decide(path, authorization, query_key, content_type, body)
        self.store.record(
            received_at=received_at,
            status=None if reply.drop else reply.status,
            size=len(body) if isinstance(body, bytes) else 0,
            key_in_query=query_key is not None,
            events=reply.events,
        )
        return reply

    def _decide(
        self,
        path: str,
        authorization: str,
        query_key: str | None,
        content_type: str,
        body: bytes | Reply,
    ) -> Reply:
        route = parse_track_path(path)
        if route is None:
            return Reply(404, {"error": f"no such endpoint; the API serves POST {TRACK_PATH}"})
        if not self._authorised(authorization, query_key):
            return Reply(401, {"error": "Unauthorized: API key not accepted"})
        expected = (self.target.org, self.target.project, self.target.source)
        if route != expected:
            return Reply(401, {"error": "Unauthorized: this key has no such org/project/source"})
        if isinstance(body, Reply):
            return body
        limit = self.faults.max_body_bytes
        if limit is not None and len(body) > limit:
            return Reply(413, {"error": f"Request body exceeds {limit} bytes"})
        wait = self._dice.take_token()
        if wait:
            return Reply(
                429, {"error": "Too many requests"}, (("Retry-After", str(math.ceil(wait))),)
            )
        if self._dice.roll(self.faults.error_rate):
            return Reply(503, {"error": "Service unavailable (sandbox fault)"})
        if self._dice.roll(self.faults.transient_400_rate):
            return Reply(400, {"error": TRANSIENT_400})
        if content_type.split(";")[0].strip().lower() != "application/json":
            return Reply(415, {"error": "Content-Type must be application/json"})
        verdict = check_body(body)
        if isinstance(verdict, Rejection):
            return Reply(400, verdict.to_json())
        return Reply(201, {}, events=verdict, drop=self._dice.roll(self.faults.drop_rate))

    def _authorised(self, authorization: str, query_key: str | None) -> bool:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() == "basic" and _same(encoded.strip(), self._basic):
            return True
        return query_key is not None and _same(query_key, self.target.api_key)


def parse_track_path(path: str) -> tuple[str, str, str] | None:
    """(org, project, source) of a track path, URL-decoded; None for any other path."""
    parts = path.split("/")
    if len(parts) != 8 or parts[0] or parts[1] != "v1" or parts[3] != "projects":
        return None
    if parts[5] != "sources" or parts[7] != "track":
        return None
    return unquote(parts[2]), unquote(parts[4]), unquote(parts[6])


def _same(given: str, expected: str) -> bool:
    # Constant time, so response timing does not reveal how much of a key was right.
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


class Server(ThreadingHTTPServer):
    """Keeps the open connections, so that stopping can end them instead of waiting."""

    daemon_threads = True

    def __init__(self, host: str, port: int, api: TrackApi) -> None:
        self.api = api
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((host, port), Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can hang without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Registered here, in the serving thread, so that stop() cannot miss a connection
        # whose handler thread has not started yet.
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def stop(self) -> None:
        """Stop accepting, wake every handler thread, wait for them all."""
        self.stopping.set()
        self.shutdown()
        with self._open_lock:
            for connection in self._open:
                with contextlib.suppress(OSError):  # the peer already left
                    connection.shutdown(socket.SHUT_RDWR)
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.stopping.is_set():
            return
        if isinstance(sys.exc_info()[1], OSError):  # the client went away mid-exchange
            LOG.info("connection from %s lost: %s", client_address, sys.exc_info()[1])
        else:
            LOG.exception("sandbox: error while serving %s", client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"intempt-sandbox/{__version__}"
    # Headers and body leave in two writes: with Nagle on, delayed ACKs add ~40 ms each.
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_S

    @property
    def _server(self) -> Server:
        return cast(Server, self.server)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        store = self._server.api.store
        if url.path == "/_sandbox/stats":
            self._send(200, store.stats())
        elif url.path == "/_sandbox/events":
            query = parse_qs(url.query)
            try:
                limit = int(query.get("limit", ["100"])[0])
                after = int(query.get("after", ["0"])[0])
                self._send(200, store.events(limit=limit, after=after))
            except ValueError as exc:
                self._send(400, {"error": str(exc)})
        elif parse_track_path(url.path) is not None:
            self._send(405, {"error": "use POST"}, (("Allow", "POST"),))
        else:
            self._send(404, {"error": f"no such page; the API serves POST {TRACK_PATH}"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = self._read_body()
        if url.path == "/_sandbox/reset":
            if isinstance(body, Reply) and body.close:
                self.close_connection = True
            self._server.api.store.reset()
            self._send(200, {})
            return
        latency = self._server.api.faults.latency_ms
        if latency:
            self._server.stopping.wait(latency / 1000)
        reply = self._server.api.answer(
            url.path,
            url.query,
            self.headers.get("Authorization", ""),
            self.headers.get("Content-Type", ""),
            body,
        )
        if reply.drop:
            self.close_connection = True  # hang up unanswered, as a proxy timeout would
            return
        if reply.close:
            self.close_connection = True
        self._send(reply.status, reply.body, reply.headers)

    def _read_body(self) -> bytes | Reply:
        """The body, read in full whenever possible: answering with unread bytes left in the
        socket would reset the connection and lose the answer."""
        if self.headers.get("Transfer-Encoding"):
            return Reply(411, {"error": "send the body with a Content-Length"}, close=True)
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            return Reply(400, {"error": "bad Content-Length"}, close=True)
        if length > HARD_BODY_LIMIT:
            return Reply(
                413, {"error": f"Request body exceeds {HARD_BODY_LIMIT} bytes"}, close=True
            )
        body = self.rfile.read(length)
        if len(body) < length:
            return Reply(400, {"error": "body shorter than its Content-Length"}, close=True)
        if self.headers.get("Content-Encoding", "identity").lower() != "identity":
            # Compressed bodies are not documented for the track API.
            return Reply(415, {"error": "Content-Encoding is not supported: send plain JSON"})
        return body

    def _send(self, status: int, payload: Any, headers: Sequence[tuple[str, str]] = ()) -> None:
        body = orjson.dumps(payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Successes are the bulk of traffic: kept out of the log unless asked for.
        level = logging.DEBUG if str(code).startswith("2") else logging.INFO
        if LOG.isEnabledFor(level):
            LOG.log(level, "%s %s", _redact(self.requestline), code)

    def log_error(self, format: str, *args: Any) -> None:
        # Mostly idle keep-alive timeouts; a refused request is logged by log_request anyway.
        if LOG.isEnabledFor(logging.DEBUG):
            LOG.debug("%s", _redact(format % args))

    def log_message(self, format: str, *args: Any) -> None:
        LOG.info("%s", _redact(format % args))


def _redact(text: str) -> str:
    return KEY_IN_TEXT.sub(r"\1<redacted>", text)
