"""Event-id stage: give every valid row a deterministic eventId and serialise its item.

The id is a hash of the row as it will be sent (see docs/event-ids.md): the canonical text
is a version tag, the event name and one `path=value` line per sent field in sorted path
order, hashed with SHA-256; 122 of its bits become an RFC 9562 version-8 UUID. The same
row gets the same id from CSV, Parquet or a DataFrame, in any column order or chunk size.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from uploader.contract import TOP_LEVEL_FIELDS
from uploader.duplicates import KEY_BYTES, NO_VALUE, KeySet, first_occurrences, split_keys
from uploader.mapping import MappedChunk
from uploader.reasons import Reason
from uploader.validation import RowReject, reject_row

ID_VERSION_TAG = "uploader-event-id/v1"
# Order of top-level keys in a serialised item (data last), for readable request bodies.
_TOP_ORDER = {name: i for i, name in enumerate(TOP_LEVEL_FIELDS)}


class Event(NamedTuple):
    """One item ready to send: its group name, id, serialised JSON, and where it came from.

    A NamedTuple rather than a frozen dataclass: one is made per row on the hot path, and a
    tuple is built several times faster (immutable all the same)."""

    name: str
    event_id: str
    item: bytes
    file: str
    row: int
    key: bytes = b""  # KEY_BYTES of the content hash (derived ids only): see duplicates.py


class DuplicateTracker:
    """Run-wide memory of ids (in bounded space, see duplicates.py): collapses exact
    duplicates and enforces unique given ids."""

    def __init__(self, keep_duplicates: bool) -> None:
        self.keep_duplicates = keep_duplicates
        self.content = KeySet()  # content hashes of the events seen so far
        self.repeats: dict[tuple[int, int], int] = {}  # content key -> times seen, if > 1
        self.given = KeySet(with_values=True)  # given eventIds -> first (file index, row)
        self.files: list[str] = []
        self.collapsed = 0
        # Content keys delivered by earlier runs of the files being resumed: a row that
        # repeats one of them is not sent again, even if its first occurrence is not re-read.
        self.previous: KeySet | None = None
        self.already_sent = 0

    def file_index(self, name: str) -> int:
        if name not in self.files:
            self.files.append(name)
        return self.files.index(name)


def event_id_from_text(text: str) -> str:
    return _uuid_from_digest(hashlib.sha256(text.encode("utf-8")).digest())


def _uuid_from_digest(full: bytes) -> str:
    digest = bytearray(full[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8: custom, hash-based
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 9562 variant
    return str(uuid.UUID(bytes=bytes(digest)))


@dataclass(frozen=True)
class Identified:
    """The id stage's output for one chunk."""

    events: list[Event]  # in row order
    rejects: list[RowReject]  # given eventIds used twice
    collapsed: list[int]  # source rows that repeat an earlier event exactly (not sent)


def assign_event_ids(
    mapped: MappedChunk, valid: np.ndarray, tracker: DuplicateTracker
) -> Identified:
    """Events for the valid rows, in row order; duplicate given eventIds become rejects.

    Column-wise: the canonical texts and the item JSON are built with Arrow string kernels;
    only hashing and the duplicate check visit rows one by one."""
    take = pa.array(valid, pa.int64())
    names = mapped.names.take(take)
    fields = {p: a.take(take) for p, a in mapped.values.items() if p != "eventId"}
    texts = {p: value_texts(a) for p, a in fields.items()}
    canonical = canonical_texts(names, texts)
    digests = [hashlib.sha256(t).digest() for t in pc.cast(canonical, pa.binary()).to_pylist()]
    rows = mapped.chunk.rows.take(take).to_pylist()
    file = mapped.chunk.source.name
    keep = np.ones(len(valid), dtype=bool)
    event_ids: list[str | None] = [None] * len(valid)
    rejects: list[RowReject] = []
    given = mapped.values.get("eventId")
    derive = np.ones(len(valid), dtype=bool)
    if given is not None:
        given_ids = given.take(take).to_pylist()
        derive = np.array([g is None for g in given_ids], dtype=bool)
        for j, reason in _check_given(given_ids, rows, file, tracker).items():
            keep[j] = False
            rejects.append(reject_row(mapped, int(valid[j]), "eventId", reason))
        event_ids = list(given_ids)
    _collapse(np.flatnonzero(derive), digests, canonical, tracker, keep, event_ids)
    derived = _uuids([d for d, e in zip(digests, event_ids, strict=True) if e is None])
    it = iter(derived)
    ids = [e if e is not None else next(it) for e in event_ids]
    items = _items(pa.array(ids, pa.string()), fields, texts)
    kept = np.flatnonzero(keep).tolist()
    name_list = names.to_pylist()
    item_list = pc.cast(items, pa.binary()).to_pylist()
    keys = [d[:KEY_BYTES] if e else b"" for d, e in zip(digests, derive.tolist(), strict=True)]
    events = [Event(name_list[j], ids[j], item_list[j], file, rows[j], keys[j]) for j in kept]
    collapsed = [rows[j] for j in np.flatnonzero(~keep & derive).tolist()]
    return Identified(events, rejects, collapsed)


def _check_given(
    given_ids: list[str | None], rows: list[int], file: str, tracker: DuplicateTracker
) -> dict[int, str]:
    """Reasons for the rows whose given eventId was used before (in this run)."""
    where = [j for j, g in enumerate(given_ids) if g is not None]
    if not where:
        return {}
    hi, lo = split_keys([hashlib.sha256(str(given_ids[j]).encode()).digest() for j in where])
    earlier = tracker.given.lookup(hi, lo)
    first = first_occurrences(hi, lo)
    file_index = tracker.file_index(file)
    reasons: dict[int, str] = {}
    for k, j in enumerate(where):
        if earlier[k] >= NO_VALUE:
            used_file, used_row = tracker.files[int(earlier[k]) >> 40], int(earlier[k]) & _ROW_MASK
        elif first[k] != k:
            used_file, used_row = file, rows[where[int(first[k])]]
        else:
            continue
        reasons[j] = Reason(
            f"eventId {given_ids[j]!r} is also used by {used_file} row {used_row}; "
            "event ids must be unique",
            "used by an earlier row (event ids must be unique)",
        )
    new = np.flatnonzero((earlier < NO_VALUE) & (first == np.arange(len(where))))
    packed = np.array([(file_index << 40) | rows[where[k]] for k in new.tolist()], dtype=np.int64)
    tracker.given.add(hi[new], lo[new], packed)
    return reasons


def _collapse(
    rows: np.ndarray,
    digests: list[bytes],
    canonical: pa.Array,
    tracker: DuplicateTracker,
    keep: np.ndarray,
    event_ids: list[str | None],
) -> None:
    """Exact duplicates (same content hash) among `rows`: dropped and counted, or with
    --keep-duplicates given an id of their own, numbered by occurrence."""
    if not len(rows):
        return
    hi, lo = split_keys([digests[j] for j in rows.tolist()])
    if tracker.previous is not None:
        sent_before = tracker.previous.lookup(hi, lo) >= NO_VALUE
        keep[rows[sent_before]] = False
        tracker.already_sent += int(sent_before.sum())
        rows, hi, lo = rows[~sent_before], hi[~sent_before], lo[~sent_before]
        if not len(rows):
            return
    earlier = tracker.content.lookup(hi, lo) >= NO_VALUE
    first = first_occurrences(hi, lo)
    repeat = earlier | (first != np.arange(len(rows)))
    new = np.flatnonzero(~repeat)
    tracker.content.add(hi[new], lo[new])
    for k in np.flatnonzero(repeat).tolist():
        j = int(rows[k])
        if not tracker.keep_duplicates:
            keep[j] = False
            tracker.collapsed += 1
            continue
        key = (int(hi[k]), int(lo[k]))
        seen = tracker.repeats.get(key, 1) + 1
        tracker.repeats[key] = seen
        event_ids[j] = event_id_from_text(canonical[j].as_py() + f"\noccurrence={seen}")


_ROW_MASK = (1 << 40) - 1


def _uuids(digests: list[bytes]) -> list[str]:
    """RFC 9562 version-8 UUID text of each digest's first 16 bytes, column-wise."""
    if not digests:
        return []
    raw = np.frombuffer(b"".join(d[:16] for d in digests), dtype=np.uint8).reshape(-1, 16)
    raw = raw.copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x80  # version 8: custom, hash-based
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 9562 variant
    nibbles = np.empty((len(raw), 32), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    text = np.full((len(raw), 36), ord("-"), dtype=np.uint8)
    text[:, _HEX_POSITIONS] = _HEX_DIGITS[nibbles]
    flat = text.tobytes().decode("ascii")
    return [flat[i * 36 : (i + 1) * 36] for i in range(len(raw))]


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX_POSITIONS = [i for i in range(36) if i not in (8, 13, 18, 23)]


def canonical_texts(names: pa.Array, texts: Mapping[str, pa.Array]) -> pa.Array:
    """The text hashed into each row's eventId (docs/event-ids.md): the version tag, the
    event name, then one `path=value` line per sent field in path order. `texts` are the
    fields' values as `value_texts` writes them (null: the field is not sent)."""
    return _join(
        [
            pa.scalar(ID_VERSION_TAG),
            _prefixed("name=", _escape_text(names)),
            *(_prefixed(f"{p}=", texts[p]) for p in sorted(texts)),
        ],
        "\n",
        len(names),
    )


def value_texts(array: pa.Array) -> pa.Array:
    """Each value as it is written in the id text and, but for quoting, in the JSON body.
    Text: hash-escaped (`\\`, `\n`, `\r`). Whole doubles below 2**53 (-0.0 included): as
    integers (3.0 -> 3). Other doubles: the shortest decimal that reads back to the same
    double, in Arrow's layout (docs/event-ids.md)."""
    kind = array.type
    if pa.types.is_string(kind):
        return _escape_text(array)
    if pa.types.is_boolean(kind):
        return pc.if_else(array, "true", "false")
    if pa.types.is_integer(kind):
        return pc.cast(array, pa.string())
    # Whole doubles are written as integers (3.0 -> 3), others in their shortest form.
    whole = pc.and_(pc.equal(pc.floor(array), array), pc.less(pc.abs(array), 2.0**53))
    as_int = pc.cast(pc.cast(pc.if_else(whole, array, 0.0), pa.int64()), pa.string())
    return pc.if_else(whole, as_int, pc.cast(array, pa.string()))


def _escape_text(array: pa.Array) -> pa.Array:
    out = pc.replace_substring(array, "\\", "\\\\")
    out = pc.replace_substring(out, "\n", "\\n")
    return pc.replace_substring(out, "\r", "\\r")


def _json_string(array: pa.Array) -> pa.Array:
    out = pc.replace_substring(array, "\\", "\\\\")
    out = pc.replace_substring(out, '"', '\\"')
    quoted = pc.binary_join_element_wise('"', out, '"', "")
    control = pc.fill_null(pc.match_substring_regex(array, r"[\x00-\x1f]"), False)
    if not pc.any(control).as_py():
        return quoted
    # Control characters need \uXXXX escapes: rare, so those values go through orjson.
    patched = quoted.to_pylist()
    for i in np.flatnonzero(control.to_numpy(zero_copy_only=False)).tolist():
        patched[i] = orjson.dumps(array[i].as_py()).decode()
    return pa.array(patched, pa.string())


def _prefixed(prefix: str, array: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(prefix, array, "")  # null stays null


def _join(parts: list[Any], separator: str, n: int) -> pa.Array:
    joined = pc.binary_join_element_wise(*parts, separator, null_handling="skip")
    if isinstance(joined, pa.Scalar):  # every part was a scalar
        joined = pa.array([joined.as_py()] * n, pa.string())
    # Guard against a kernel that drops rows whose inputs are all null (seen in pyarrow 26):
    # every row here has the non-null tag, so the length must match.
    assert len(joined) == n, "canonical texts lost rows"
    return joined


def _items(ids: pa.Array, fields: dict[str, pa.Array], texts: dict[str, pa.Array]) -> pa.Array:
    def member(key: str, path: str) -> pa.Array:
        array = fields[path]
        literal = _json_string(array) if pa.types.is_string(array.type) else texts[path]
        return _prefixed(f'"{key}":', literal)

    top = sorted((p for p in fields if not p.startswith("data.")), key=lambda p: _TOP_ORDER[p])
    data = [p for p in fields if p.startswith("data.")]
    n = len(ids)
    data_object = pc.binary_join_element_wise(
        '"data":{', _join([member(p[len("data.") :], p) for p in data], ",", n), "}", ""
    )
    body = _join(
        [_prefixed('"eventId":', _json_string(ids)), *(member(p, p) for p in top), data_object],
        ",",
        n,
    )
    return pc.binary_join_element_wise("{", body, "}", "")
