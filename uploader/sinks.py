"""Where a run writes besides the API: the rejects file, the dry run's request bodies and
the report. Each is written under a temporary name and renamed when the run ends, so that
a crash never leaves half a file under the name the user asked for."""

from __future__ import annotations

import contextlib
import csv
import errno
import os
from collections.abc import Iterator, Sequence
from typing import IO, Any

import orjson

from uploader.errors import OutputError
from uploader.results import REJECT_COLUMNS
from uploader.validation import RowReject


class AtomicFile:
    """A file written as `PATH.partial` and renamed to PATH by `commit()`; `abandon()`
    removes the partial file. Parent folders are created; the file is the owner's only (it
    holds people's identifiers). A failure to write is an OutputError naming the file."""

    def __init__(self, path: str, mode: str = "wb", **kwargs: Any) -> None:
        self.path = path
        self.partial = f"{path}.partial"
        with _naming(path):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.chmod(self.partial, 0o600)  # an earlier partial file may have had others
            self.fh: IO[Any] = os.fdopen(fd, mode, **kwargs)

    def write(self, data: Any) -> None:
        with _naming(self.path):
            self.fh.write(data)

    def commit(self) -> None:
        with _naming(self.path):
            self.fh.close()
            os.replace(self.partial, self.path)

    def abandon(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()
        with contextlib.suppress(OSError):
            os.unlink(self.partial)


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        # What was delivered before is recorded: the caller says so where it matters.
        what_to_do = (
            "free some space or choose another path"
            if exc.errno in (errno.ENOSPC, errno.EDQUOT)
            else "choose a path in a folder that exists and can be written"
        )
        raise OutputError(f"cannot write {path} ({exc.strerror or exc}); {what_to_do}") from exc


class RejectsWriter:
    """Streams rejects to CSV: file, row, field, reason, then the union of source columns."""

    def __init__(self, path: str, columns: Sequence[str]) -> None:
        self.path = path
        self.columns = [c for c in dict.fromkeys(columns) if c not in REJECT_COLUMNS]
        self.file = AtomicFile(path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self.file)
        self._writer.writerow([*REJECT_COLUMNS, *self.columns])
        self.count = 0

    def write(self, rejects: Sequence[RowReject]) -> None:
        for r in rejects:
            original = [_cell(r.original.get(c)) for c in self.columns]
            self._writer.writerow([r.file, r.row, r.field, r.reason, *original])
        self.count += len(rejects)

    def close(self) -> None:
        self.file.commit()

    def abandon(self) -> None:
        self.file.abandon()


class BodiesWriter:
    """The dry run's request bodies, one JSON body per line in send order."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.file = AtomicFile(path)
        self.count = 0

    def write(self, body: bytes) -> None:
        self.file.write(body + b"\n")
        self.count += 1

    def close(self) -> None:
        self.file.commit()

    def abandon(self) -> None:
        self.file.abandon()


def write_json(path: str, data: dict[str, Any]) -> None:
    out = AtomicFile(path)
    try:
        out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    except BaseException:
        out.abandon()
        raise
    out.commit()


def _cell(value: Any) -> str:
    """A value as text that reads back to the same sent value (a fixed rejects file is an
    input): booleans as Arrow writes them, true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
