"""A fast loopback sink for the benchmark: answers every POST with 201 at once (or after
`--latency-ms`), and counts requests, events and bytes. It checks nothing but the HTTP
framing, so that the figures measure the contender, not the sandbox's body checks.

    python bench/sink.py [--port 0] [--latency-ms 50]

It prints the same banner as `uploader sandbox` (the harness reads its address and key
from it) and answers `GET /_sandbox/stats` like the sandbox. Events are counted as the
`"eventId":` keys of each body, which every contender sends (the official SDK included).
One asyncio loop, raw protocol: a few microseconds a request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections import Counter

ORG, PROJECT, SOURCE, API_KEY = "sandbox-org", "sandbox-project", "7340000000000000001", "a.b"
EVENT_KEY = b'"eventId":'


class Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.events = 0
        self.bytes = 0
        self.status_counts: Counter[str] = Counter()

    def as_json(self) -> bytes:
        return json.dumps(
            {
                "requests": self.requests,
                "events": self.events,
                "bytes": self.bytes,
                "status_counts": dict(self.status_counts),
            }
        ).encode()


class Sink(asyncio.Protocol):
    def __init__(self, stats: Stats, latency_s: float) -> None:
        self.stats = stats
        self.latency_s = latency_s
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self.answer(head[0], body)

    def answer(self, request_line: str, body: bytes) -> None:
        method, path, _ = request_line.split(" ", 2)
        if method == "GET" and path.startswith("/_sandbox/stats"):
            self.send(200, self.stats.as_json())
            return
        self.stats.requests += 1
        self.stats.events += body.count(EVENT_KEY)
        self.stats.bytes += len(body)
        self.stats.status_counts["201"] += 1
        if self.latency_s:
            asyncio.get_running_loop().call_later(self.latency_s, self.send, 201, b"{}")
        else:
            self.send(201, b"{}")

    def send(self, status: int, payload: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        reason = {200: "OK", 201: "Created"}[status]
        self.transport.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    stats = Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Sink(stats, args.latency_ms / 1000), args.host, args.port, backlog=512
    )
    port = server.sockets[0].getsockname()[1]
    base = f"http://{args.host}:{port}"
    print(
        f"Intempt sandbox listening on {base}\n"
        f"  track URL  {base}/v1/{ORG}/projects/{PROJECT}/sources/{SOURCE}/track\n"
        f"  org        {ORG}\n  project    {PROJECT}\n  source     {SOURCE}\n"
        f"  api key    {API_KEY}\n  storage    none (fast sink)\n"
        f"  faults     latency-ms={args.latency_ms:g}\n  stats      {base}/_sandbox/stats\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
