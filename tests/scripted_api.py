"""A tiny HTTP server on 127.0.0.1 that answers from a script: for the answers the sandbox
cannot give (a web page, a redirect, a connection reset in the middle of an answer), over
a real socket, to the uploader's own transport or to a whole `uploader upload`."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

# How long a reset waits after the start of its answer, for the client to have read it.
RESET_AFTER_S = 0.05


@dataclass(frozen=True)
class Reset:
    """Send `partial`, the start of an answer, then reset the connection (RST)."""

    partial: bytes


Answer = bytes | Reset


def answer(status: str, body: bytes = b"", **headers: str) -> bytes:
    """A whole HTTP/1.1 answer: answer("200 OK", b"<html>", Content_Type="text/html")."""
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class ScriptedApi:
    """Answers each request with the next answer of the script; the last one answers every
    request after it. `bodies` holds the request bodies received, in order."""

    def __init__(self, answers: Sequence[Answer]) -> None:
        assert answers, "a script needs at least one answer"
        self.answers = list(answers)
        self.bodies: list[bytes] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

        self.base_url = ""

    def __enter__(self) -> ScriptedApi:
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        self.base_url = f"http://{host}:{port}"
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._shut_down(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _shut_down(self) -> None:
        """Stop listening and end the connections still open (a client's idle one)."""
        assert self._server is not None
        self._server.close()
        serving = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in serving:
            task.cancel()
        await asyncio.gather(*serving, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                self.bodies.append(await reader.readexactly(length))
                step = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
                if isinstance(step, Reset):
                    writer.write(step.partial)
                    await writer.drain()
                    await asyncio.sleep(RESET_AFTER_S)
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                writer.write(step)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
