"""The state file's SQLite connection, with every failure said in the user's words: a
full disk, a read-only one, a damaged file, each with what to do."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from uploader.errors import CheckpointError


class Guarded:
    """The connection, with every SQLite failure turned into a CheckpointError."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self.connection = connection
        self.path = path

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> sqlite3.Cursor:
        try:
            return self.connection.execute(sql, parameters)
        except sqlite3.Error as exc:
            raise sqlite_error(self.path, exc) from exc

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> sqlite3.Cursor:
        try:
            return self.connection.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise sqlite_error(self.path, exc) from exc

    def executescript(self, script: str) -> sqlite3.Cursor:
        try:
            return self.connection.executescript(script)
        except sqlite3.Error as exc:
            raise sqlite_error(self.path, exc) from exc

    def close(self) -> None:
        self.connection.close()


def sqlite_error(path: str, exc: sqlite3.Error) -> CheckpointError:
    detail = str(exc)
    lowered = detail.lower()
    if "full" in lowered:
        return CheckpointError(
            f"the disk holding the state file {path} is full ({detail}); what was delivered "
            "until now is recorded. Free some space and run the same command to resume",
            kind="full",
        )
    if any(word in lowered for word in ("readonly", "read-only", "unable to open", "i/o")):
        return CheckpointError(
            f"state file {path} cannot be written ({detail}); nothing more was sent. Check "
            "the disk and its permissions, or give --state FILE on a writable disk",
            kind="unwritable",
        )
    if any(word in lowered for word in ("malformed", "not a database", "encrypted", "corrupt")):
        return CheckpointError(damaged(path, detail), kind="damaged")
    return CheckpointError(f"state file {path}: {detail}", kind="other")


def damaged(path: str, detail: str) -> str:
    return (
        f"state file {path} is damaged ({detail}); nothing was sent. Keep it (it records "
        "what was delivered) and restore it from a backup, or give --state FILE for a new "
        "state file, knowing that a new one sends again what this one records as delivered"
    )
