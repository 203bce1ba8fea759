"""Event-id stage: give every valid row a deterministic eventId and serialise its item.

The id is a hash of the row as it will be sent (see docs/event-ids.md): the canonical text
is a version tag, the event name and one `path=value` line per sent field in sorted path
order, hashed with SHA-256; 122 of its bits become an RFC 9562 version-8 UUID. The same
row gets the same id from CSV, Parquet or a DataFrame, in any column order or chunk size.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from uploader.contract import TOP_LEVEL_FIELDS
from uploader.mapping import MappedChunk
from uploader.validate import RowReject, reject_row

ID_VERSION_TAG = "uploader-event-id/v1"
# Order of top-level keys in a serialised item (data last), for readable request bodies.
_TOP_ORDER = {name: i for i, name in enumerate(TOP_LEVEL_FIELDS)}


@dataclass(frozen=True)
class Event:
    """One item ready to send: its group name, id, serialised JSON, and where it came from."""

    name: str
    event_id: str
    item: bytes
    file: str
    row: int


class DuplicateTracker:
    """Run-wide memory of ids: collapses exact duplicates and enforces unique given ids."""

    def __init__(self, keep_duplicates: bool) -> None:
        self.keep_duplicates = keep_duplicates
        self.occurrences: dict[bytes, int] = {}  # content hash -> times seen
        self.given: dict[str, tuple[str, int]] = {}  # supplied eventId -> first (file, row)
        self.collapsed = 0


def canonical_text(name: str, fields: Iterable[tuple[str, Any]], occurrence: int = 1) -> str:
    """The text hashed into an eventId. `fields` are (path, value) of every sent field."""
    lines = [ID_VERSION_TAG, f"name={_escape(name)}"]
    lines.extend(f"{path}={value_text(value)}" for path, value in sorted(fields))
    if occurrence > 1:
        lines.append(f"occurrence={occurrence}")
    return "\n".join(lines)


def event_id_from_text(text: str) -> str:
    return _uuid_from_digest(hashlib.sha256(text.encode("utf-8")).digest())


def _uuid_from_digest(full: bytes) -> str:
    digest = bytearray(full[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8: custom, hash-based
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 9562 variant
    return str(uuid.UUID(bytes=bytes(digest)))


def value_text(value: Any) -> str:
    if isinstance(value, str):
        return _escape(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return orjson.dumps(value).decode()  # a float, written as the JSON body writes it


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def assign_event_ids(
    mapped: MappedChunk, valid: list[int], tracker: DuplicateTracker
) -> tuple[list[Event], list[RowReject]]:
    """Events for the valid rows, in row order; duplicate given eventIds become rejects."""
    paths = [p for p in mapped.values if p != "eventId"]
    columns = [mapped.values[p] for p in paths]
    given_ids = mapped.values.get("eventId")
    rows = mapped.chunk.rows.to_pylist()
    file = mapped.chunk.source.name
    events: list[Event] = []
    rejects: list[RowReject] = []
    for i in valid:
        name = mapped.names[i]
        assert name is not None
        fields = [(p, col[i]) for p, col in zip(paths, columns, strict=True) if col[i] is not None]
        if given_ids is not None and given_ids[i] is not None:
            event_id = given_ids[i]
            first = tracker.given.setdefault(event_id, (file, rows[i]))
            if first != (file, rows[i]):
                rejects.append(
                    reject_row(
                        mapped,
                        i,
                        "eventId",
                        f"eventId {event_id!r} is also used by {first[0]} row {first[1]}; "
                        "event ids must be unique",
                    )
                )
                continue
        else:
            digest = hashlib.sha256(canonical_text(name, fields).encode("utf-8")).digest()
            key = digest[:16]
            seen = tracker.occurrences.get(key, 0) + 1
            tracker.occurrences[key] = seen
            if seen == 1:
                event_id = _uuid_from_digest(digest)
            elif tracker.keep_duplicates:
                event_id = event_id_from_text(canonical_text(name, fields, occurrence=seen))
            else:
                tracker.collapsed += 1
                continue
        events.append(Event(name, event_id, serialise_item(event_id, fields), file, rows[i]))
    return events, rejects


def serialise_item(event_id: str, fields: list[tuple[str, Any]]) -> bytes:
    item: dict[str, Any] = {"eventId": event_id}
    data: dict[str, Any] = {}
    for path, value in sorted(fields, key=lambda f: _TOP_ORDER.get(f[0], len(_TOP_ORDER))):
        if path.startswith("data."):
            data[path[len("data.") :]] = value
        else:
            item[path] = value
    item["data"] = data
    return orjson.dumps(item)
