"""The wire (transport.py) against a scripted HTTP/1.1 server on 127.0.0.1.

Every way an answer can arrive, or fail to, ends in the httpx.Response or the httpx
exception httpx itself would give (the sender's retry policy reads nothing else), with no
header of the request in its text; connections are reused, bounded and replaced when stale.
Timeouts are short values, and the tests assert the exception, never a duration.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import certifi
import httpx
import pytest

from uploader.target import Credentials
from uploader.transport import MAX_HEAD_BYTES, Http11Transport, default_transport, ssl_context

KEY = "pk_live42.s3cr3t-Value_xyz0123456789"
AUTHORIZATION = Credentials.from_key(KEY).authorization
SECRETS = (KEY, KEY.split(".")[1], AUTHORIZATION.split()[-1])
# Long enough for any exchange on 127.0.0.1; only the timeout under test is short.
PATIENT = 10.0
SHORT = 0.05

# --- the scripted server -------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One request as it arrived on the wire."""

    head: bytes
    body: bytes

    @property
    def request_line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    def headers(self) -> dict[bytes, bytes]:
        lines = self.head.rstrip(b"\r\n").split(b"\r\n")[1:]
        return {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines)
        }


class Peer:
    """One accepted connection, as a step of the script sees it."""

    def __init__(self, writer: asyncio.StreamWriter, released: asyncio.Event) -> None:
        self.writer = writer
        self.request = Received(b"", b"")  # the one being answered
        self.reading = True  # the server reads another request after this step
        self._released = released

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        """Hang up politely (FIN)."""
        self.reading = False
        self.writer.close()
        await self.writer.wait_closed()

    def reset(self) -> None:
        """Hang up rudely: linger 0 makes the close a TCP reset."""
        self.reading = False
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def hang(self) -> None:
        """Say nothing more, read nothing more, until the test ends."""
        self.reading = False
        await self._released.wait()


Step = Callable[[Peer], Awaitable[None]]


def answer(raw: bytes) -> Step:
    """Send these bytes and read the next request on the same connection."""

    async def step(peer: Peer) -> None:
        await peer.send(raw)

    return step


def answer_and_close(raw: bytes = b"") -> Step:
    async def step(peer: Peer) -> None:
        await peer.send(raw)
        await peer.close()

    return step


def answer_and_reset(raw: bytes = b"") -> Step:
    async def step(peer: Peer) -> None:
        await peer.send(raw)
        peer.reset()

    return step


def answer_and_hang(raw: bytes = b"") -> Step:
    """Send these bytes, then neither answer nor close (a stuck server, or one that said
    `Connection: close` and leaves the closing to the client)."""

    async def step(peer: Peer) -> None:
        await peer.send(raw)
        await peer.hang()

    return step


def echo(before: bytes = b"") -> Step:
    """Reflect the request's head, key and all, after `before` (a confused server)."""

    async def step(peer: Peer) -> None:
        await peer.send(before + peer.request.head)

    return step


def answer_later(raw: bytes, turns: int = 5) -> Step:
    """Let the event loop turn a few times first, so that concurrent requests overlap."""

    async def step(peer: Peer) -> None:
        for _ in range(turns):
            await asyncio.sleep(0)
        await peer.send(raw)

    return step


class Origin:
    """An HTTP/1.1 server on 127.0.0.1 that answers each request it reads with the next step
    of its script, and counts connections. `async with Origin(step, ...) as origin:`"""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.received: list[Received] = []
        self.accepted = 0  # connections accepted
        self.most_open = 0  # connections open at once, at most
        self.most_busy = 0  # requests being answered at once, at most
        self.hung_up = asyncio.Event()  # a connection ended (set once per connection)
        self._open = 0
        self._busy = 0
        self._released = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/track"

    async def __aenter__(self) -> Origin:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._released.set()
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.accepted += 1
        self._open += 1
        self.most_open = max(self.most_open, self._open)
        peer = Peer(writer, self._released)
        try:
            while peer.reading:
                head = await reader.readuntil(b"\r\n\r\n")
                request = Received(head, b"")
                length = int(request.headers().get(b"content-length", b"0"))
                peer.request = Received(head, await reader.readexactly(length))
                self.received.append(peer.request)
                self._busy += 1
                self.most_busy = max(self.most_busy, self._busy)
                try:
                    await self.steps.pop(0)(peer)
                finally:
                    self._busy -= 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up
        finally:
            self._open -= 1
            writer.close()
            self.hung_up.set()


def ok(body: bytes = b"{}", *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 201 Created", b"Content-Type: application/json", *extra]
    head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


# --- the client side -----------------------------------------------------------------------


@asynccontextmanager
async def wire(max_connections: int = 4) -> AsyncIterator[Http11Transport]:
    transport = Http11Transport(max_connections=max_connections)
    try:
        yield transport
    finally:
        await transport.aclose()


def request_to(
    url: str, body: bytes = b'{"track":[]}', *, method: str = "POST", **timeouts: float
) -> httpx.Request:
    """A request as the sender builds it: the key in its Authorization header only."""
    return httpx.Request(
        method,
        url,
        headers=[("Authorization", AUTHORIZATION), ("Content-Type", "application/json")],
        content=body,
        extensions={"timeout": httpx.Timeout(PATIENT, **timeouts).as_dict()},
    )


async def send(transport: httpx.AsyncBaseTransport, request: httpx.Request) -> httpx.Response:
    """As the sender does: the transport's answer, read whole."""
    response = await transport.handle_async_request(request)
    try:
        await response.aread()
    finally:
        await response.aclose()
    return response


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


def assert_tells_no_secret(exc: BaseException) -> None:
    texts = [f"{type(e).__name__}: {e} {e!r} {e.args!r}" for e in chain(exc)]
    for text in texts:
        assert "Authorization" not in text
        for secret in SECRETS:
            assert secret not in text


def failure_of(*steps: Step, body: bytes = b'{"track":[]}', **timeouts: float) -> BaseException:
    """The exception of one request against a server playing `steps` (then answering 201),
    after checking that it is key-free, names its request, and that the next request gets
    a fresh connection and its answer."""

    async def main() -> BaseException:
        async with Origin(*steps, answer(ok())) as origin, wire() as transport:
            request = request_to(origin.url, body, **timeouts)
            with pytest.raises(httpx.HTTPError) as caught:
                await send(transport, request)
            assert isinstance(caught.value, httpx.RequestError)
            assert caught.value.request is request
            then = await send(transport, request_to(origin.url))
            assert then.status_code == 201
            assert origin.accepted == 2  # the failed connection was not used again
            return caught.value

    exc = asyncio.run(main())
    assert_tells_no_secret(exc)
    return exc


# --- answers -------------------------------------------------------------------------------

GZIPPED = gzip.compress(b'{"error":"slow down"}')
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
    b"4\r\nWiki\r\n5;note=ext\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n"
)


@dataclass(frozen=True)
class Form:
    """A form of answer: the server's step, what the response must hold, and whether the
    connection carries the next request."""

    step: Step
    status: int
    content: bytes
    header: tuple[str, str]
    reused: bool


FORMS = {
    "content-length": Form(
        answer(ok(b'{"ok":1}')), 201, b'{"ok":1}', ("Content-Type", "application/json"), True
    ),
    "chunked": Form(answer(CHUNKED), 200, b"Wikipedia", ("Content-Type", "text/plain"), True),
    "close-delimited": Form(
        answer_and_close(b"HTTP/1.1 200 OK\r\nX-End: close\r\n\r\nup to the close"),
        200, b"up to the close", ("X-End", "close"), False,
    ),
    "http/1.0": Form(
        answer_and_close(b"HTTP/1.0 200 OK\r\nX-V: 1.0\r\n\r\nold school"),
        200, b"old school", ("X-V", "1.0"), False,
    ),
    "100-continue-first": Form(
        answer(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"{}", b"X-After: continue")),
        201, b"{}", ("X-After", "continue"), True,
    ),
    "connection-close": Form(
        answer_and_close(ok(b'{"error":"bye"}', b"Connection: close")),
        201, b'{"error":"bye"}', ("Connection", "close"), False,
    ),
    "204-without-length": Form(
        answer(b"HTTP/1.1 204 No Content\r\nX-Empty: yes\r\n\r\n"),
        204, b"", ("X-Empty", "yes"), True,
    ),
    "gzip": Form(
        answer(
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Encoding: gzip\r\nRetry-After: 3\r\n"
            b"Content-Length: %d\r\n\r\n" % len(GZIPPED) + GZIPPED
        ),
        429, b'{"error":"slow down"}', ("Retry-After", "3"), True,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", FORMS)
def test_each_form_of_answer_is_read_whole(name: str) -> None:
    form = FORMS[name]

    async def main() -> tuple[httpx.Response, httpx.Response, Origin]:
        async with Origin(form.step, answer(ok())) as origin, wire() as transport:
            first = await send(transport, request_to(origin.url))
            second = await send(transport, request_to(origin.url))
            return first, second, origin

    first, second, origin = asyncio.run(main())
    assert (first.status_code, first.content) == (form.status, form.content)
    header, value = form.header
    assert first.headers[header] == value
    assert second.status_code == 201
    assert origin.accepted == (1 if form.reused else 2)


def test_repeated_headers_are_all_kept_in_order() -> None:
    async def main() -> httpx.Response:
        raw = ok(b"{}", b"X-Seen: one", b"X-Seen: two", b"x-seen:  three ")
        async with Origin(answer(raw)) as origin, wire() as transport:
            return await send(transport, request_to(origin.url))

    assert asyncio.run(main()).headers.get_list("X-Seen") == ["one", "two", "three"]


def test_a_head_request_reads_no_body_despite_its_length() -> None:
    async def main() -> tuple[httpx.Response, Origin]:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        async with Origin(answer(head), answer(ok())) as origin, wire() as transport:
            response = await send(transport, request_to(origin.url, b"", method="HEAD"))
            assert (await send(transport, request_to(origin.url))).status_code == 201
            return response, origin

    response, origin = asyncio.run(main())
    assert (response.status_code, response.content) == (200, b"")
    assert origin.accepted == 1


def test_the_request_goes_out_as_given() -> None:
    body = b'{"track":[{"name":"Product viewed","payload":[]}]}'

    async def main() -> tuple[Origin, int]:
        async with Origin(answer(ok())) as origin, wire() as transport:
            url = origin.url.replace("/v1/track", "/v1/acme%20org/track?x=1")
            await send(transport, request_to(url, body))
            return origin, httpx.URL(url).port or 0

    origin, port = asyncio.run(main())
    [received] = origin.received
    assert received.request_line == b"POST /v1/acme%20org/track?x=1 HTTP/1.1"
    headers = received.headers()
    assert headers[b"host"] == b"127.0.0.1:%d" % port
    assert headers[b"content-length"] == str(len(body)).encode()
    assert headers[b"authorization"] == AUTHORIZATION.encode()
    assert received.body == body


# --- failures ------------------------------------------------------------------------------

HEAD_200 = b"HTTP/1.1 200 OK\r\n"
PARTIAL_BODY = b'HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{"ok'
PARTIAL_HEAD = b"HTTP/1.1 201 Created\r\nContent-Le"
PARTIAL_CHUNKS = CHUNKED[:-30]
CHUNKS = HEAD_200 + b"Transfer-Encoding: chunked\r\n\r\n"

# httpx (h11) says RemoteProtocolError for an answer it cannot read, and for a peer that
# hangs up (FIN) before the answer is complete.
UNREADABLE = {
    "status-without-code": answer(b"HTTP/1.1 OK\r\n\r\n"),
    "not-http": answer(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
    "bad-header-line": answer(HEAD_200 + b"no colon\r\n\r\n"),
    "head-over-64-KiB": answer(HEAD_200 + b"X-Pad: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n"),
    "content-length-not-a-number": answer(HEAD_200 + b"Content-Length: ten\r\n\r\n"),
    "content-length-negative": answer(HEAD_200 + b"Content-Length: -1\r\n\r\n"),
    "chunk-size-not-hex": answer(CHUNKS + b"zz\r\n"),
    "chunk-size-negative": answer(CHUNKS + b"-5\r\nabc"),
    "closed-before-answering": answer_and_close(),
    "closed-mid-head": answer_and_close(PARTIAL_HEAD),
    "closed-mid-body": answer_and_close(PARTIAL_BODY),
    "closed-mid-chunks": answer_and_close(PARTIAL_CHUNKS),
}


@pytest.mark.parametrize("name", UNREADABLE)
def test_an_unreadable_or_cut_answer_is_a_remote_protocol_error(name: str) -> None:
    assert type(failure_of(UNREADABLE[name])) is httpx.RemoteProtocolError


@pytest.mark.parametrize("raw", [b"", PARTIAL_BODY], ids=["before-answering", "mid-body"])
def test_a_connection_reset_is_a_read_error(raw: bytes) -> None:
    assert type(failure_of(answer_and_reset(raw))) is httpx.ReadError


@pytest.mark.parametrize(
    "raw",
    [b"", PARTIAL_HEAD, b"HTTP/1.1 201 Created\r\nContent-Length: 9\r\n\r\n{", PARTIAL_CHUNKS],
    ids=["silent", "stuck-mid-head", "stuck-mid-body", "stuck-mid-chunks"],
)
def test_an_answer_that_never_comes_is_a_read_timeout(raw: bytes) -> None:
    assert type(failure_of(answer_and_hang(raw), read=SHORT)) is httpx.ReadTimeout


@pytest.mark.parametrize(
    "step", [echo(), echo(b"HTTP/1.1 200 OK\r\n")], ids=["as-status", "as-headers"]
)
def test_a_server_reflecting_the_request_gets_no_key_into_the_error(step: Step) -> None:
    exc = failure_of(step)
    assert type(exc) is httpx.RemoteProtocolError
    assert "POST /v1/track HTTP/1.1" in str(exc)  # says what came back, up to the key


def test_a_reset_while_the_body_is_sent_is_a_write_error() -> None:
    async def read_head_and_leave(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()  # with the body unread in the socket, the close is a reset

    async def main() -> BaseException:
        server = await asyncio.start_server(read_head_and_leave, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # Far beyond the socket buffers: the reset comes while the body is still going out.
        request = request_to(f"http://127.0.0.1:{port}/v1/track", b"x" * (32 << 20))
        try:
            async with wire() as transport:
                with pytest.raises(httpx.HTTPError) as caught:
                    await send(transport, request)
        finally:
            server.close()
            await server.wait_closed()
        assert caught.value.request is request
        return caught.value

    exc = asyncio.run(main())
    assert type(exc) is httpx.WriteError
    assert_tells_no_secret(exc)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def connect_failure(url: str, **timeouts: float) -> BaseException:
    async def main() -> BaseException:
        request = request_to(url, **timeouts)
        async with wire() as transport:
            with pytest.raises(httpx.HTTPError) as caught:
                await send(transport, request)
        assert caught.value.request is request
        return caught.value

    exc = asyncio.run(main())
    assert_tells_no_secret(exc)
    return exc


def test_a_closed_port_is_a_connect_error() -> None:
    exc = connect_failure(f"http://127.0.0.1:{free_port()}/v1/track")
    assert type(exc) is httpx.ConnectError


def test_a_listener_with_a_full_backlog_is_a_connect_timeout() -> None:
    # Linux drops a SYN while the listener's accept queue is full: the connect never ends.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]
        try:
            for filler in fillers:
                filler.setblocking(False)
                filler.connect_ex(("127.0.0.1", port))
            exc = connect_failure(f"http://127.0.0.1:{port}/v1/track", connect=SHORT)
        finally:
            for filler in fillers:
                filler.close()
    assert type(exc) is httpx.ConnectTimeout


def test_waiting_too_long_for_a_free_connection_is_a_pool_timeout() -> None:
    async def main() -> BaseException:
        async with Origin(answer_and_hang()) as origin, wire(max_connections=1) as transport:
            stuck = asyncio.create_task(send(transport, request_to(origin.url)))
            while not origin.received:
                await asyncio.sleep(0)
            request = request_to(origin.url, pool=SHORT)
            with pytest.raises(httpx.HTTPError) as caught:
                await send(transport, request)
            stuck.cancel()
            await asyncio.gather(stuck, return_exceptions=True)
        return caught.value

    exc = asyncio.run(main())
    assert type(exc) is httpx.PoolTimeout
    assert_tells_no_secret(exc)


# --- connections ---------------------------------------------------------------------------


def test_sequential_requests_share_one_connection() -> None:
    async def main() -> tuple[list[int], Origin]:
        async with Origin(*[answer(ok())] * 5) as origin, wire() as transport:
            statuses = [
                (await send(transport, request_to(origin.url))).status_code for _ in range(5)
            ]
            return statuses, origin

    statuses, origin = asyncio.run(main())
    assert statuses == [201] * 5
    assert (origin.accepted, len(origin.received)) == (1, 5)


def test_concurrent_requests_use_at_most_max_connections() -> None:
    async def main() -> tuple[list[int], Origin]:
        async with (
            Origin(*[answer_later(ok())] * 12) as origin,
            wire(max_connections=3) as transport,
        ):
            responses = await asyncio.gather(
                *(send(transport, request_to(origin.url)) for _ in range(12))
            )
            return [r.status_code for r in responses], origin

    statuses, origin = asyncio.run(main())
    assert statuses == [201] * 12
    assert (origin.accepted, origin.most_open, origin.most_busy) == (3, 3, 3)


def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    async def main() -> tuple[int, int, Origin]:
        # A keep-alive answer (HTTP/1.1, no Connection: close), then the server hangs up.
        async with Origin(answer_and_close(ok()), answer(ok())) as origin, wire() as transport:
            first = await send(transport, request_to(origin.url))
            await origin.hung_up.wait()
            await settle()
            second = await send(transport, request_to(origin.url))
            return first.status_code, second.status_code, origin

    first, second, origin = asyncio.run(main())
    assert (first, second) == (201, 201)
    assert origin.accepted == 2


@pytest.mark.parametrize("value", [b"close", b"Close", b"CLOSE", b"keep-alive, close"])
def test_connection_close_is_honoured_even_when_the_server_leaves_the_closing_to_us(
    value: bytes,
) -> None:
    async def main() -> tuple[int, Origin]:
        said_close = answer_and_hang(ok(b"{}", b"Connection: " + value))
        async with Origin(said_close, answer(ok())) as origin, wire() as transport:
            await send(transport, request_to(origin.url))
            # Reusing the connection would wait for an answer that never comes.
            second = await send(transport, request_to(origin.url, read=1.0))
            return second.status_code, origin

    status, origin = asyncio.run(main())
    assert status == 201
    assert origin.accepted == 2


async def settle() -> None:
    """Let the loop hear what the kernel already holds (a FIN on a client socket)."""
    for _ in range(3):
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)


def test_an_answer_sent_on_an_idle_connection_is_not_taken_for_the_next_one() -> None:
    # Some servers say 408 on an idle keep-alive connection before they hang up.
    late = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

    async def main() -> tuple[int, Origin]:
        async with (
            Origin(answer_and_close(ok() + late), answer(ok())) as origin,
            wire() as transport,
        ):
            await send(transport, request_to(origin.url))
            await origin.hung_up.wait()
            await settle()
            second = await send(transport, request_to(origin.url))
            return second.status_code, origin

    status, origin = asyncio.run(main())
    assert status == 201
    assert len(origin.received) == 2


# --- which transport, and which certificates --------------------------------------------------

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """environment(HTTPS_PROXY=..., ...): exactly these proxy variables, in both cases."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)

    def set_(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return set_


def transport_for(url: str) -> httpx.AsyncBaseTransport:
    transport = default_transport(httpx.URL(url), 8)
    asyncio.run(transport.aclose())
    return transport


PROXY = "http://proxy.test:3128"
API = "https://api.test/v1/track"
PROXIED, DIRECT = httpx.AsyncHTTPTransport, Http11Transport


@pytest.mark.parametrize(
    ("variables", "url", "expected"),
    [
        ({}, API, DIRECT),
        ({"HTTPS_PROXY": PROXY}, API, PROXIED),
        ({"https_proxy": PROXY}, API, PROXIED),
        ({"HTTP_PROXY": PROXY}, "http://api.test/v1/track", PROXIED),
        ({"HTTP_PROXY": PROXY}, API, DIRECT),  # a proxy for http:// only
        ({"ALL_PROXY": PROXY}, API, PROXIED),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "api.test"}, API, DIRECT),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": ".test"}, "https://eu.api.test/v1/track", DIRECT),
        ({"HTTPS_PROXY": PROXY, "no_proxy": "*"}, API, DIRECT),
        ({"HTTPS_PROXY": PROXY, "NO_PROXY": "other.test,localhost"}, API, PROXIED),
    ],
)
def test_default_transport_is_httpx_own_only_behind_a_proxy(
    environment: Callable[..., None],
    variables: dict[str, str],
    url: str,
    expected: type[httpx.AsyncBaseTransport],
) -> None:
    environment(**variables)
    assert type(transport_for(url)) is expected


def test_behind_a_proxy_the_request_goes_to_the_proxy(environment: Callable[..., None]) -> None:
    async def main() -> tuple[int, Origin]:
        async with Origin(answer(ok())) as proxy:
            environment(HTTP_PROXY=proxy.url.removesuffix("/v1/track"))
            transport = default_transport(httpx.URL("http://api.test/v1/track"), 2)
            try:
                response = await send(transport, request_to("http://api.test/v1/track"))
            finally:
                await transport.aclose()
            return response.status_code, proxy

    status, proxy = asyncio.run(main())
    assert status == 201
    [received] = proxy.received
    assert received.request_line == b"POST http://api.test/v1/track HTTP/1.1"
    assert received.headers()[b"authorization"] == AUTHORIZATION.encode()


def test_ssl_context_trusts_certifi_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    default = ssl_context()
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname
    assert len(default.get_ca_certs()) > 100  # certifi's bundle

    bundle = Path(certifi.where()).read_text(encoding="ascii")
    end = "-----END CERTIFICATE-----"
    one = tmp_path / "one.pem"
    one.write_text(
        bundle[bundle.index("-----BEGIN CERTIFICATE-----") : bundle.index(end) + len(end)]
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(one))
    assert len(ssl_context().get_ca_certs()) == 1
