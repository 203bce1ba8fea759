"""The wire: HTTP/1.1 keep-alive connections to the track API, as an httpx transport.

The sender posts a body held in memory and reads a small answer, thousands of times a
minute. httpx's default transport (httpcore on anyio) spends about 1 ms of CPU on each such
request on the benchmark machine, this one about 0.1 ms (bench/transport.py measures both),
and the upload's throughput is bound by the CPU. It speaks only what the uploader needs:
one origin, requests with a known length, answers with a length, chunked or up to the
close; TLS with the same certificates httpx would use. Behind an HTTP(S) proxy from the
environment the sender uses httpx's own transport instead (`default_transport`).

Failures are raised as the httpx exceptions httpx would raise, so that the sender's retry
policy (send.py) reads them the same way, and the tests drive the sender through
`httpx.MockTransport` as before.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import urllib.request
from contextlib import suppress

import httpx

# Longest status line and headers accepted from the API: an answer is a few hundred bytes.
MAX_HEAD_BYTES = 64 * 1024
_END_OF_HEAD = b"\r\n\r\n"


def default_transport(url: httpx.URL, max_connections: int) -> httpx.AsyncBaseTransport:
    """This module's transport, or httpx's own when a proxy from the environment applies
    to `url` (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY)."""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    limits = httpx.Limits(max_connections=max_connections)
    if proxy and not urllib.request.proxy_bypass(url.host):
        return httpx.AsyncHTTPTransport(proxy=proxy, limits=limits, verify=ssl_context())
    return Http11Transport(max_connections=max_connections)


def ssl_context() -> ssl.SSLContext:
    """The certificates httpx trusts: SSL_CERT_FILE / SSL_CERT_DIR if set, else certifi's."""
    cafile, capath = os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")
    if not (cafile or capath):
        import certifi  # httpx's own dependency

        cafile = certifi.where()
    context = ssl.create_default_context(cafile=cafile, capath=capath)
    context.set_alpn_protocols(["http/1.1"])
    return context


class Http11Transport(httpx.AsyncBaseTransport):
    """At most `max_connections` connections to the one origin of the requests."""

    def __init__(self, *, max_connections: int) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._ssl: ssl.SSLContext | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise httpx.PoolTimeout("no connection free in time", request=request) from exc
        try:
            connection = await self._connection(request, timeouts.get("connect"))
            try:
                response, reusable = await connection.exchange(request, timeouts)
            except BaseException:
                connection.close()
                raise
            if reusable:
                self._idle.append(connection)
            else:
                connection.close()
            return response
        finally:
            self._slots.release()

    async def _connection(self, request: httpx.Request, timeout: float | None) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.alive:
                return connection
            connection.close()
        url = request.url
        secure = url.scheme == "https"
        if secure and self._ssl is None:
            self._ssl = ssl_context()
        port = url.port or (443 if secure else 80)
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    url.host,
                    port,
                    ssl=self._ssl if secure else None,
                    server_hostname=url.host if secure else None,
                    limit=MAX_HEAD_BYTES,
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"no connection to {url.host}:{port} in time",
                                       request=request) from exc  # fmt: skip
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {url.host}:{port}: {exc}",
                                     request=request) from exc  # fmt: skip
        return _Connection(reader, writer)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @property
    def alive(self) -> bool:
        """Usable for a new request: open, and holding no bytes the server sent since its
        last answer (a 408 before it hangs up: taken for the next answer, it would be
        wrong). StreamReader shows what it holds only through its buffer."""
        unread = getattr(self.reader, "_buffer", b"")
        return not (self.reader.at_eof() or self.writer.is_closing() or unread)

    def close(self) -> None:
        with suppress(Exception):
            self.writer.close()

    async def exchange(
        self, request: httpx.Request, timeouts: dict[str, float | None]
    ) -> tuple[httpx.Response, bool]:
        """Send the request and read the whole answer: (the response, whether this
        connection may carry another request)."""
        body = request.content  # the sender's requests are in memory
        target = request.url.raw_path.decode("ascii")
        head = [f"{request.method} {target} HTTP/1.1\r\n".encode("ascii")]
        head += [name + b": " + value + b"\r\n" for name, value in request.headers.raw]
        self.writer.write(b"".join(head) + b"\r\n" + body)
        try:
            async with asyncio.timeout(timeouts.get("write")):
                await self.writer.drain()
        except TimeoutError as exc:
            raise httpx.WriteTimeout("the request was not sent in time", request=request) from exc
        except OSError as exc:
            raise httpx.WriteError(f"sending the request failed: {exc}", request=request) from exc
        try:
            async with asyncio.timeout(timeouts.get("read")):
                return await self._answer(request)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("no answer in time", request=request) from exc
        except asyncio.IncompleteReadError as exc:
            said = "a complete answer" if exc.partial else "an answer"
            raise httpx.RemoteProtocolError(
                f"the server closed the connection without sending {said}", request=request
            ) from exc
        except asyncio.LimitOverrunError as exc:
            raise httpx.RemoteProtocolError("the answer's head is too long",
                                            request=request) from exc  # fmt: skip
        except OSError as exc:
            raise httpx.ReadError(f"reading the answer failed: {exc}", request=request) from exc

    async def _answer(self, request: httpx.Request) -> tuple[httpx.Response, bool]:
        while True:
            raw = await self.reader.readuntil(_END_OF_HEAD)
            status, version, headers = _parse_head(raw, request)
            if not 100 <= status < 200:
                break  # 1xx: an interim answer; the real one follows
        fields = {name.lower(): value for name, value in headers}
        # Connection options are case-insensitive (RFC 9110 7.6.1): "Close" means close.
        closes = b"close" in fields.get(b"connection", b"").lower()
        keep_alive = version == b"HTTP/1.1" and not closes
        if request.method == "HEAD" or status in (204, 304):
            content = b""
        elif b"chunked" in fields.get(b"transfer-encoding", b"").lower():
            content = await self._chunked(request)
        elif b"content-length" in fields:
            try:
                length = int(fields[b"content-length"])
            except ValueError:
                length = -1
            if length < 0:  # readexactly would raise ValueError, which no caller expects
                raise httpx.RemoteProtocolError("a bad Content-Length", request=request)
            content = await self.reader.readexactly(length)
        else:  # the body runs to the end of the connection
            content = await self.reader.read()
            keep_alive = False
        response = httpx.Response(status, headers=headers, content=content, request=request)
        return response, keep_alive

    async def _chunked(self, request: httpx.Request) -> bytes:
        parts: list[bytes] = []
        while True:
            line = await self.reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                size = -1
            if size < 0:
                raise httpx.RemoteProtocolError("a bad chunk size", request=request)
            if size == 0:
                while await self.reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)


def _parse_head(raw: bytes, request: httpx.Request) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    lines = raw[: -len(_END_OF_HEAD)].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if not (version.startswith(b"HTTP/1.") and code.isdigit()):
        raise httpx.RemoteProtocolError(
            f"not an HTTP/1.1 answer: {lines[0][:80]!r}", request=request
        )
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise httpx.RemoteProtocolError(f"a bad header line: {line[:80]!r}", request=request)
        headers.append((name.strip(), value.strip()))
    return int(code), version, headers
