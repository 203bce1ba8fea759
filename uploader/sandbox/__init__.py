"""A local stand-in for Intempt's track API, to rehearse an upload against.

    with Sandbox() as sb:
        upload_to(sb.track_url, sb.api_key)
        assert sb.stats()["events"] == 500

It serves POST /v1/{org}/projects/{project}/sources/{sourceId}/track as the real API does
(rules.py), keeps what it accepts in SQLite (store.py), and can misbehave on purpose (server.py).
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any
from urllib.parse import quote

from uploader.errors import ConfigError
from uploader.sandbox.faults import Faults
from uploader.sandbox.server import Server, Target, TrackApi
from uploader.sandbox.store import Store, open_store

DEFAULT_ORG = "sandbox-org"
DEFAULT_PROJECT = "sandbox-project"
# 19 digits like a real source snowflake, so that a float round trip in a client shows up.
DEFAULT_SOURCE = "7340000000000000001"
# A throwaway key in the real "<prefix>.<secret>" form; it guards nothing.
DEFAULT_API_KEY = "sandbox.local-secret"

# How often the serving loop looks for stop(): the upper bound on how long stopping takes.
POLL_INTERVAL_S = 0.05


class Sandbox:
    """The sandbox in a background thread on a free port. Use it as a context manager."""

    def __init__(
        self,
        *,
        org: str = DEFAULT_ORG,
        project: str = DEFAULT_PROJECT,
        source: str = DEFAULT_SOURCE,
        api_key: str = DEFAULT_API_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        db: str | None = None,
        null: bool = False,
        max_body_bytes: int | None = None,
        rate_limit: float | None = None,
        error_rate: float = 0.0,
        drop_rate: float = 0.0,
        latency_ms: int = 0,
        transient_400_rate: float = 0.0,
        seed: int | None = None,
    ) -> None:
        for name, value in (("org", org), ("project", project)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{name} must be a non-empty string; got {value!r}")
        if not isinstance(source, str) or not source.isascii() or not source.isdigit():
            # A snowflake is digits kept as a string; an int or float here is a client bug.
            raise ConfigError(f"source must be a string of digits; got {source!r}")
        prefix, _, secret = api_key.partition(".") if isinstance(api_key, str) else ("", "", "")
        if not prefix or not secret:
            raise ConfigError('api_key must have the form "<prefix>.<secret>"')
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"port must be an integer from 0 to 65535; got {port!r}")
        if null and db is not None:
            raise ConfigError("db and null exclude each other: null mode stores nothing")
        self.org, self.project, self.source, self.api_key = org, project, source, api_key
        self.host, self.db, self.null = host, db, null
        self.faults = Faults(
            max_body_bytes=max_body_bytes,
            rate_limit=rate_limit,
            error_rate=error_rate,
            drop_rate=drop_rate,
            latency_ms=latency_ms,
            transient_400_rate=transient_400_rate,
            seed=seed,
        )
        self._port = port
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._final_stats: dict[str, Any] | None = None

    def __repr__(self) -> str:
        where = self.base_url if self._server else "stopped"
        return f"Sandbox({where}, org={self.org!r}, project={self.project!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Sandbox:
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        store = open_store(self.db, null=self.null)
        target = Target(self.org, self.project, self.source, self.api_key)
        try:
            server = Server(self.host, self._port, TrackApi(target, self.faults, store))
        except BaseException:
            store.close()
            raise
        self._server = server
        self._final_stats = None
        self._thread = threading.Thread(
            target=server.serve_forever,
            args=(POLL_INTERVAL_S,),
            name=f"sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.stop()
        thread.join()
        # Kept so that stats() still answers after the with-block, when tests look.
        self._final_stats = server.api.store.stats()
        server.api.store.close()
        self._server = self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- where ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return int(self._running().server_port)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def track_url(self) -> str:
        org, project = quote(self.org, safe=""), quote(self.project, safe="")
        return f"{self.base_url}/v1/{org}/projects/{project}/sources/{self.source}/track"

    # -- what it received -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        if self._server is None and self._final_stats is not None:
            return dict(self._final_stats)
        return self._store().stats()

    def events(self, limit: int = 100, after: int = 0) -> list[dict[str, Any]]:
        return self._store().events(limit=limit, after=after)

    def reset(self) -> None:
        self._store().reset()

    def _store(self) -> Store:
        return self._running().api.store

    def _running(self) -> Server:
        if self._server is None:
            raise RuntimeError("the sandbox is not running: use `with Sandbox() as sb:` or start()")
        return self._server
