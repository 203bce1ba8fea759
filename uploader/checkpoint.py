"""Checkpoint store: a SQLite file that remembers, durably, what the API acknowledged.

A row is recorded as delivered only after a 2xx for the request that carried it, in the
same transaction that clears that request's in-flight mark. After any crash the file is
consistent (SQLite transactions are atomic); requests still marked in flight are the only
ones whose events may be sent twice, and the next run counts them.

Rows are stored as runs of consecutive row numbers per file, so a 10-million-row file
that went out in 20,000 requests costs 20,000 small records, not 10 million.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from uploader.errors import CheckpointError
from uploader.read import Source
from uploader.rowsets import Rows, RowSet, decode_refs, decode_runs, encode_refs, encode_runs
from uploader.state_sqlite import Guarded, damaged, sqlite_error

SCHEMA_VERSION = 1
SENT = "sent"  # acknowledged by the API
SETTLED = "settled"  # needs no sending: rejected before sending, or an exact repeat

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, started_at REAL NOT NULL, ended_at REAL,
    status TEXT NOT NULL, target TEXT NOT NULL, possibly_resent INTEGER NOT NULL DEFAULT 0,
    figures TEXT);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY, target TEXT NOT NULL, path TEXT NOT NULL, size INTEGER,
    mtime_ns INTEGER,
    fingerprint TEXT NOT NULL, status TEXT NOT NULL, rows_read INTEGER NOT NULL DEFAULT 0,
    delivered INTEGER NOT NULL DEFAULT 0, rejected INTEGER NOT NULL DEFAULT 0,
    last_run INTEGER, updated_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS files_by_fingerprint ON files (target, fingerprint);
CREATE TABLE IF NOT EXISTS acks (
    file_id INTEGER NOT NULL, runs BLOB NOT NULL, n INTEGER NOT NULL, kind TEXT NOT NULL,
    keys BLOB);
CREATE INDEX IF NOT EXISTS acks_by_file ON acks (file_id);
CREATE TABLE IF NOT EXISTS inflight (
    id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, refs BLOB NOT NULL, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS api_rejects (
    file_id INTEGER NOT NULL, row INTEGER NOT NULL, reason TEXT NOT NULL,
    PRIMARY KEY (file_id, row)) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class FileRecord:
    id: int
    target: str
    path: str
    size: int | None
    fingerprint: str
    status: str  # "partial" or "complete"
    rows_read: int
    delivered: int
    rejected: int
    updated_at: float


@dataclass(frozen=True)
class RunRecord:
    id: int
    started_at: float
    ended_at: float | None
    status: str
    target: str
    possibly_resent: int


class Checkpoint:
    """The state file. One process at a time writes it (lease.py); every write is one
    transaction. Any SQLite failure is a CheckpointError that says what to do."""

    def __init__(self, path: str, *, max_pages: int | None = None) -> None:
        self.path = path
        parent = os.path.dirname(os.path.abspath(path))
        existed = os.path.exists(path) and os.path.getsize(path) > 0
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise CheckpointError(f"state file {path}: cannot create its folder ({exc.strerror})",
                                  kind="unwritable") from exc  # fmt: skip
        if not existed:  # it holds people's identifiers: the owner's eyes only, and SQLite
            # gives the -wal and -shm files beside it the mode the file has when they are made
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            except OSError as exc:
                raise CheckpointError(
                    f"state file {path}: cannot create it ({exc.strerror}); check the disk and "
                    "its permissions, or give --state FILE on a writable disk",
                    kind="unwritable",
                ) from exc
        try:
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise sqlite_error(path, exc) from exc
        self.db = Guarded(connection, path)
        try:
            if existed:
                self._check_intact()
                if self._has_table("meta"):  # another version's file is refused untouched
                    self._check_version()
                if not self._has_table("meta") and self._tables():
                    raise CheckpointError(
                        f"{path} is an SQLite database, but not an uploader state file; "
                        "nothing was sent. Give --state FILE for the state file (a new name "
                        "starts one)",
                        kind="damaged",
                    )
            # WAL + NORMAL: a commit survives the process being killed (not a power cut),
            # which is the failure we promise to survive, at a fraction of FULL's cost.
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=5000")
            if max_pages is not None:  # a cap on the file's size (the tests fill a disk so)
                self.db.execute(f"PRAGMA max_page_count={int(max_pages)}")
            self.db.executescript(_SCHEMA)
            self._check_version()
        except BaseException:
            connection.close()
            raise

    @classmethod
    def for_reading(cls, path: str) -> Checkpoint:
        """The state file opened read-only (`uploader status`): nothing is written, not even
        the schema, so it works on read-only media and beside a running upload."""
        self = cls.__new__(cls)
        self.path = path
        try:
            connection = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise sqlite_error(path, exc) from exc
        self.db = Guarded(connection, path)
        try:
            self.db.execute("PRAGMA busy_timeout=5000")
            if not self._has_table("meta"):
                raise CheckpointError(
                    f"{path} is not an uploader state file; give --state FILE", kind="damaged"
                )
            self._check_version()
        except BaseException:
            connection.close()
            raise
        return self

    def _tables(self) -> list[str]:
        rows = self.db.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        return [name for (name,) in rows]

    def _check_intact(self) -> None:
        (verdict,) = self.db.execute("PRAGMA quick_check").fetchone()
        if verdict != "ok":
            raise CheckpointError(damaged(self.path, verdict), kind="damaged")

    def _has_table(self, name: str) -> bool:
        found = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)
        ).fetchone()
        return found is not None

    def _check_version(self) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            return
        try:
            found = int(row[0])
        except ValueError:
            raise CheckpointError(damaged(self.path, "no schema version"), kind="damaged") from None
        if found > SCHEMA_VERSION:
            raise CheckpointError(
                f"state file {self.path} was written by a newer version of uploader (state "
                f"schema {found}; this one reads {SCHEMA_VERSION}); nothing was sent. Upgrade "
                "uploader, or give --state FILE for a new state file (which would send "
                "again what this one records as delivered)",
                kind="version",
            )
        if found != SCHEMA_VERSION:
            raise CheckpointError(
                f"state file {self.path} was written by an older version of uploader (state "
                f"schema {found}; this one reads {SCHEMA_VERSION}); nothing was sent. Finish "
                "its uploads with that version, or give --state FILE for a new state file",
                kind="version",
            )

    def close(self) -> None:
        self.db.close()

    # runs
    def start_run(self, target: str) -> int:
        cur = self.db.execute(
            "INSERT INTO runs (started_at, status, target) VALUES (?, 'running', ?)",
            (time.time(), target),
        )
        return int(cur.lastrowid or 0)

    def note_resent(self, run_id: int, count: int) -> None:
        """Events this run sends again because an earlier run never saw their answer:
        recorded at once, so that it is known even if this run dies too."""
        self.db.execute("UPDATE runs SET possibly_resent=? WHERE id=?", (count, run_id))

    def end_run(self, run_id: int, status: str, figures: dict[str, object]) -> None:
        self.db.execute(
            "UPDATE runs SET ended_at=?, status=?, figures=? WHERE id=?",
            (time.time(), status, orjson.dumps(figures).decode(), run_id),
        )

    def runs(self) -> list[RunRecord]:
        rows = self.db.execute(
            "SELECT id, started_at, ended_at, status, target, possibly_resent FROM runs ORDER BY id"
        ).fetchall()
        return [RunRecord(*r) for r in rows]

    # files
    def find_file(
        self, target: str, fingerprint_: str, path: str
    ) -> tuple[FileRecord | None, FileRecord | None]:
        """For one target: (record with this content, record at this path, other content).
        Files are tracked per target: a rehearsal on the sandbox does not count as sent."""
        same = self.db.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE target=? AND fingerprint=? "
            "ORDER BY id DESC LIMIT 1",
            (target, fingerprint_),
        ).fetchone()
        other = self.db.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE target=? AND path=? AND fingerprint<>? "
            "ORDER BY id DESC LIMIT 1",
            (target, path, fingerprint_),
        ).fetchone()
        return (FileRecord(*same) if same else None, FileRecord(*other) if other else None)

    def files(self) -> list[FileRecord]:
        rows = self.db.execute(f"SELECT {_FILE_COLUMNS} FROM files ORDER BY id").fetchall()
        return [FileRecord(*r) for r in rows]

    def add_file(self, target: str, source: Source, fingerprint_: str, run_id: int) -> int:
        cur = self.db.execute(
            "INSERT INTO files (target, path, size, mtime_ns, fingerprint, status, last_run,"
            " updated_at) VALUES (?, ?, ?, ?, ?, 'partial', ?, ?)",
            (target, source.name, source.size, source.mtime_ns, fingerprint_, run_id, time.time()),
        )
        return int(cur.lastrowid or 0)

    def forget_file(self, file_id: int) -> None:
        with self._transaction():
            self.db.execute("DELETE FROM acks WHERE file_id=?", (file_id,))
            self.db.execute("DELETE FROM api_rejects WHERE file_id=?", (file_id,))
            self.db.execute("DELETE FROM files WHERE id=?", (file_id,))

    def done_rows(self, file_id: int) -> tuple[RowSet, dict[int, str]]:
        """Rows already dealt with (delivered or settled), and rows the API refused (with its
        reason)."""
        blobs = self.db.execute("SELECT runs FROM acks WHERE file_id=?", (file_id,)).fetchall()
        refused = dict(
            self.db.execute(
                "SELECT row, reason FROM api_rejects WHERE file_id=?", (file_id,)
            ).fetchall()
        )
        return RowSet(decode_runs(b[0]) for b in blobs), refused

    def update_file(
        self, file_id: int, *, rows_read: int, delivered: int, rejected: int, complete: bool
    ) -> None:
        self.db.execute(
            "UPDATE files SET rows_read=?, delivered=?, rejected=?, status=?, updated_at=? "
            "WHERE id=?",
            (
                rows_read,
                delivered,
                rejected,
                "complete" if complete else "partial",
                time.time(),
                file_id,
            ),
        )

    # requests
    def mark_inflight(self, run_id: int, refs: Mapping[int, Rows]) -> int:
        cur = self.db.execute(
            "INSERT INTO inflight (run_id, refs, n) VALUES (?, ?, ?)",
            (run_id, encode_refs(refs), sum(len(r) for r in refs.values())),
        )
        return int(cur.lastrowid or 0)

    def ack(
        self,
        rows_by_file: Mapping[int, Rows],
        kind: str = SENT,
        keys_by_file: dict[int, bytes] | None = None,
    ) -> None:
        """Record rows as dealt with, in one transaction: SENT after a 2xx (with the content
        keys of the events, while the file is unfinished: see DuplicateTracker.previous);
        SETTLED for rows that need no sending (rejected, or exact repeats of an event)."""
        keys = keys_by_file or {}
        with self._transaction():
            self.db.executemany(
                "INSERT INTO acks (file_id, runs, n, kind, keys) VALUES (?, ?, ?, ?, ?)",
                [
                    (f, encode_runs(rows), len(rows), kind, keys.get(f) or None)
                    for f, rows in rows_by_file.items()
                    if len(rows)
                ],
            )

    def delivered_keys(self, file_id: int) -> bytes:
        """Content keys (KEY_BYTES each, joined) of the events of an unfinished file already
        sent."""
        blobs = self.db.execute(
            "SELECT keys FROM acks WHERE file_id=? AND keys IS NOT NULL", (file_id,)
        ).fetchall()
        return b"".join(blob for (blob,) in blobs)

    def drop_keys(self, file_id: int) -> None:
        """A finished file needs its keys no more: keep the state file small."""
        self.db.execute("UPDATE acks SET keys=NULL WHERE file_id=?", (file_id,))

    def delivered_count(self, file_id: int) -> int:
        row = self.db.execute(
            "SELECT COALESCE(SUM(n), 0) FROM acks WHERE file_id=? AND kind=?", (file_id, SENT)
        ).fetchone()
        return int(row[0])

    def refuse(self, file_id: int, row: int, reason: str) -> None:
        """Record a row the API refused for good (it is not sent again)."""
        self.db.execute(
            "INSERT OR REPLACE INTO api_rejects VALUES (?, ?, ?)", (file_id, row, reason)
        )

    def settle(self, inflight_id: int) -> None:
        """Every row of the request has its answer: it is no longer in flight."""
        self.db.execute("DELETE FROM inflight WHERE id=?", (inflight_id,))

    def take_leftover_inflight(self) -> dict[int, list[int]]:
        """Rows of requests a previous run sent without seeing every answer; clears them.
        Some may have been acknowledged since: the caller subtracts the delivered rows."""
        leftovers: dict[int, list[int]] = {}
        with self._transaction():
            for (blob,) in self.db.execute("SELECT refs FROM inflight").fetchall():
                for file_id, rows in decode_refs(blob).items():
                    leftovers.setdefault(file_id, []).extend(rows)
            self.db.execute("DELETE FROM inflight")
        return leftovers

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)


_FILE_COLUMNS = (
    "id, target, path, size, fingerprint, status, rows_read, delivered, rejected, updated_at"
)


class _Transaction:
    def __init__(self, db: Guarded) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
