"""Where the sandbox keeps what it received: SQLite, or bare counters in null mode.

Like the real events table, nothing is deduplicated: a re-sent event is stored twice, and
the stats say how many event ids came more than once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

import orjson

from uploader.sandbox.rules import Event

# Most rows /_sandbox/events returns at once: enough to page through, small enough to answer fast.
MAX_EVENTS_PAGE = 10_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    status INTEGER,
    n_events INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    key_in_query INTEGER NOT NULL,
    dropped INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL REFERENCES requests (id),
    name TEXT NOT NULL,
    event_id TEXT,
    timestamp INTEGER NOT NULL,
    rewritten INTEGER NOT NULL,
    item TEXT NOT NULL
);
"""


class Store(Protocol):
    """What the server needs from storage. `status` is None for a dropped request."""

    def record(
        self,
        *,
        received_at: int,
        status: int | None,
        size: int,
        key_in_query: bool,
        events: Sequence[Event] = (),
    ) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def events(self, limit: int = 100, after: int = 0) -> list[dict[str, Any]]: ...

    def reset(self) -> None: ...

    def close(self) -> None: ...


def open_store(db: str | None, *, null: bool) -> Store:
    """`db=None` keeps events in memory; `null` keeps only counters (for benchmarks)."""
    if null:
        return CountingStore()
    return SqliteStore(db or ":memory:")


def check_page(limit: int, after: int) -> None:
    if not 1 <= limit <= MAX_EVENTS_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_EVENTS_PAGE}; got {limit}")
    if after < 0:
        raise ValueError(f"after must be an event id >= 0; got {after}")


class SqliteStore:
    """One connection shared by the handler threads; the lock serialises them."""

    def __init__(self, path: str) -> None:
        # Handler threads share the connection: check_same_thread is replaced by our lock.
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            # A sandbox can lose its last transaction in a power cut; it must not slow uploads.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error:
            self._db.close()
            raise

    def record(
        self,
        *,
        received_at: int,
        status: int | None,
        size: int,
        key_in_query: bool,
        events: Sequence[Event] = (),
    ) -> None:
        with self._lock, self._db:  # one transaction: a request and its events, or nothing
            cursor = self._db.execute(
                "INSERT INTO requests (received_at, status, n_events, bytes, key_in_query,"
                " dropped) VALUES (?, ?, ?, ?, ?, ?)",
                (received_at, status, len(events), size, key_in_query, status is None),
            )
            request_id = cursor.lastrowid
            self._db.executemany(
                "INSERT INTO events (request_id, name, event_id, timestamp, rewritten, item)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        request_id,
                        e.name,
                        e.event_id,
                        e.stored_timestamp(received_at),
                        e.rewritten,
                        orjson.dumps(e.item).decode(),
                    )
                    for e in events
                ],
            )

    def stats(self) -> dict[str, Any]:
        with self._lock:
            requests, size, in_query, dropped = self._db.execute(
                "SELECT count(*), coalesce(sum(bytes), 0), coalesce(sum(key_in_query), 0),"
                " coalesce(sum(dropped), 0) FROM requests"
            ).fetchone()
            statuses = self._db.execute(
                "SELECT status, count(*) FROM requests WHERE status IS NOT NULL GROUP BY status"
            ).fetchall()
            events, with_id, unique, rewritten = self._db.execute(
                "SELECT count(*), count(event_id), count(DISTINCT event_id),"
                " coalesce(sum(rewritten), 0) FROM events"
            ).fetchone()
        return {
            "requests": requests,
            "events": events,
            "unique_event_ids": unique,
            "duplicate_events": with_id - unique,
            "events_without_id": events - with_id,
            "status_counts": {str(status): count for status, count in statuses},
            "rewritten_timestamps": rewritten,
            "key_in_query": in_query,
            "dropped": dropped,
            "bytes": size,
        }

    def events(self, limit: int = 100, after: int = 0) -> list[dict[str, Any]]:
        check_page(limit, after)
        with self._lock:
            rows = self._db.execute(
                "SELECT id, request_id, name, event_id, timestamp, rewritten, item FROM events"
                " WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [
            {
                "id": row[0],
                "request_id": row[1],
                "name": row[2],
                "event_id": row[3],
                "timestamp": row[4],
                "rewritten": bool(row[5]),
                "item": orjson.loads(row[6]),
            }
            for row in rows
        ]

    def reset(self) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM events")
            self._db.execute("DELETE FROM requests")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CountingStore:
    """Null mode: counts what a benchmark needs and keeps nothing else.

    Unique event ids would need every id in memory, so they are reported as None.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def record(
        self,
        *,
        received_at: int,
        status: int | None,
        size: int,
        key_in_query: bool,
        events: Sequence[Event] = (),
    ) -> None:
        rewritten = sum(1 for e in events if e.rewritten)
        with self._lock:
            self._requests += 1
            self._events += len(events)
            self._rewritten += rewritten
            self._in_query += key_in_query
            self._bytes += size
            if status is None:
                self._dropped += 1
            else:
                self._statuses[str(status)] += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self._requests,
                "events": self._events,
                "unique_event_ids": None,
                "duplicate_events": None,
                "events_without_id": None,
                "status_counts": dict(self._statuses),
                "rewritten_timestamps": self._rewritten,
                "key_in_query": self._in_query,
                "dropped": self._dropped,
                "bytes": self._bytes,
            }

    def events(self, limit: int = 100, after: int = 0) -> list[dict[str, Any]]:
        check_page(limit, after)
        return []

    def reset(self) -> None:
        with self._lock:
            self._requests = self._events = self._rewritten = 0
            self._in_query = self._dropped = self._bytes = 0
            self._statuses: Counter[str] = Counter()

    def close(self) -> None:
        pass
