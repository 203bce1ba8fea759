"""Event-id stage: give every valid row a deterministic eventId and serialise its item.

The id is a hash of the row as it will be sent (see docs/event-ids.md): the canonical text
is a version tag, the event name and one `path=value` line per sent field in sorted path
order, hashed with SHA-256; 122 of its bits become an RFC 9562 version-8 UUID. The same
row gets the same id from CSV, Parquet or a DataFrame, in any column order or chunk size.

Column-wise: texts, uuids, content keys and item JSON are built with Arrow and numpy; the
only call per row is the SHA-256 of its text.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from uploader.contract import EVENT_NAMES
from uploader.convert import MappedChunk
from uploader.duplicates import (
    KEY_BYTES,
    NO_VALUE,
    KeySet,
    first_occurrences,
    split_key_blob,
    split_keys,
)
from uploader.events import KEY_DTYPE, Events
from uploader.items import contains_bytes, fuse, item_json, item_sizes, json_text
from uploader.reasons import Reason
from uploader.validation import RowReject

ID_VERSION_TAG = "uploader-event-id/v1"
_NAMES = pa.array(EVENT_NAMES, pa.string())


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
        # Repeats collapsed, per event name (an index into EVENT_NAMES), and the first
        # 'Product ordered' row that repeats one: the plan asks for a choice about those.
        self.collapsed_by_code = np.zeros(len(EVENT_NAMES), dtype=np.int64)
        self.first_order_repeat: tuple[str, int] | None = None
        # --duplicates quantity: the kept events as they are sent (repeats.RepeatCounts.apply).
        self.finish: Callable[[Candidates], Candidates] | None = None

    def close(self) -> None:
        """Remove the keys' spill files, if any."""
        for keys in (self.content, self.given, self.previous):
            if keys is not None:
                keys.close()

    def file_index(self, name: str) -> int:
        if name not in self.files:
            self.files.append(name)
        return self.files.index(name)


def event_id_from_text(text: str) -> str:
    digest = np.frombuffer(hashlib.sha256(text.encode("utf-8")).digest(), np.uint8)
    return str(uuid_texts(digest.reshape(1, 32))[0].as_py())


@dataclass(frozen=True, eq=False)
class Candidates:
    """A chunk's valid rows, hashed, before the run-wide checks (exact duplicates, given
    eventIds used twice) and before their items are written: the per-chunk work, which a
    worker process can do. `canonical` is kept only with --keep-duplicates (repeats get ids
    from it), `originals` only with a mapped eventId (to word a reject with the row's
    columns)."""

    file: str
    codes: np.ndarray  # int8: the event name, as an index into EVENT_NAMES
    rows: np.ndarray  # int64
    digests: np.ndarray  # (n, 16) uint8: the head of each row's SHA-256
    fields: dict[str, pa.Array]  # sent values by path
    texts: dict[str, pa.Array]  # the same, as value_texts writes them
    given: pa.Array | None = None  # given eventIds (null where derived), if one is mapped
    canonical: pa.Array | None = None
    originals: tuple[dict[str, Any], ...] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, indices: np.ndarray) -> Candidates:
        where = pa.array(indices, pa.int64())
        return Candidates(
            self.file,
            self.codes[indices],
            self.rows[indices],
            self.digests[indices],
            {p: a.take(where) for p, a in self.fields.items()},
            {p: a.take(where) for p, a in self.texts.items()},
            None if self.given is None else self.given.take(where),
            None if self.canonical is None else self.canonical.take(where),
            None if self.originals is None else tuple(self.originals[i] for i in indices),
        )

    @property
    def derived(self) -> np.ndarray:
        """Which rows get an id derived from their content (not given)."""
        if self.given is None:
            return np.ones(len(self), dtype=bool)
        return np.asarray(self.given.is_null().to_numpy(zero_copy_only=False), dtype=bool)

    def keys(self) -> np.ndarray:
        keys = np.array(self.digests[:, :KEY_BYTES]).view(KEY_DTYPE).ravel()
        keys[~self.derived] = b""
        return keys

    def item_sizes(self) -> np.ndarray:
        """The bytes each row's item will take (see items.item_sizes)."""
        id_sizes = np.full(len(self), 36, dtype=np.int64)
        if self.given is not None:
            given = pc.binary_length(json_text(self.given))
            lengths = pc.fill_null(given, 36).to_numpy(zero_copy_only=False)
            id_sizes = np.asarray(lengths, dtype=np.int64)
        return item_sizes(id_sizes, self.fields, self.texts)


@dataclass(frozen=True)
class Identified:
    """The id stage's output for one chunk."""

    events: Events  # in row order
    rejects: list[RowReject]  # given eventIds used twice
    collapsed: np.ndarray  # source rows that repeat an earlier event exactly (not sent)


def derive_events(
    mapped: MappedChunk, valid: np.ndarray, *, keep_canonical: bool, line_keys: bool = False
) -> Candidates:
    """The valid rows hashed, in row order: per chunk, no run-wide state. With `line_keys`
    (--duplicates quantity) the hash leaves data.quantity out: rows that differ only in it
    are one line, whose total is sent (the id is then derived from it: repeats.py)."""
    n = len(valid)
    take = None if n == len(mapped.names) else pa.array(valid, pa.int64())
    names = mapped.names if take is None else mapped.names.take(take)
    fields = {
        p: a if take is None else a.take(take) for p, a in mapped.values.items() if p != "eventId"
    }
    texts = {p: value_texts(a) for p, a in fields.items()}
    canonical = canonical_texts(names, texts)
    if line_keys:
        line = {p: t for p, t in texts.items() if p != "data.quantity"}
        digests = sha256_each(canonical_texts(names, line))[:, :16]
    else:
        digests = sha256_each(canonical)[:, :16]
    chunk_rows = mapped.chunk.rows if take is None else mapped.chunk.rows.take(take)
    rows = np.asarray(chunk_rows.to_numpy(zero_copy_only=False), np.int64)
    codes = pc.index_in(names, value_set=_NAMES).to_numpy(zero_copy_only=False).astype(np.int8)
    given = mapped.values.get("eventId")
    originals = None
    if given is not None:
        given = given.take(pa.array(valid, pa.int64()))
        table = mapped.chunk.table
        originals = tuple(
            {name: table.column(name)[int(i)].as_py() for name in table.column_names}
            for i in valid.tolist()
        )
    return Candidates(
        mapped.chunk.source.name,
        codes,
        rows,
        digests,
        fields,
        texts,
        given,
        canonical if keep_canonical else None,
        originals,
    )


def settle_events(candidates: Candidates, tracker: DuplicateTracker) -> Identified:
    """The run-wide checks, then the items of what is kept: a given eventId used before is
    a reject; an exact repeat of an earlier event is dropped (or, with --keep-duplicates,
    numbered by occurrence)."""
    n = len(candidates)
    file, rows = candidates.file, candidates.rows
    keep = np.ones(n, dtype=bool)
    derived = candidates.derived
    keys = candidates.keys()
    rejects: list[RowReject] = []
    if candidates.given is not None and not derived.all():
        given_ids = candidates.given.to_pylist()
        assert candidates.originals is not None
        for j, reason in _check_given(given_ids, rows.tolist(), file, tracker).items():
            keep[j] = False
            reject = RowReject(file, int(rows[j]), "eventId", reason, candidates.originals[j])
            rejects.append(reject)
    occurrences = _collapse(np.flatnonzero(derived), keys, candidates.canonical, tracker, keep)
    collapsed = rows[~keep & derived]
    _note_repeats(tracker, file, rows, candidates.codes, ~keep & derived)
    kept = np.flatnonzero(keep)
    if len(kept) < n:
        candidates, keys = candidates.take(kept), keys[kept]
        position = {int(j): k for k, j in enumerate(kept.tolist())}
        occurrences = {position[j]: event_id for j, event_id in occurrences.items()}
    if tracker.finish is not None:
        candidates = tracker.finish(candidates)
    ids = uuid_texts(candidates.digests)
    if candidates.given is not None:
        ids = pc.if_else(pc.is_null(candidates.given), ids, candidates.given)
    if occurrences:
        patched = ids.to_pylist()
        for j, event_id in occurrences.items():
            patched[j] = event_id
        ids = pa.array(patched, pa.string())
    items = item_json(ids, candidates.fields, candidates.texts)
    events = Events(file, candidates.codes, items, ids, candidates.rows, keys)
    return Identified(events, rejects, collapsed)


def _note_repeats(
    tracker: DuplicateTracker, file: str, rows: np.ndarray, codes: np.ndarray, dropped: np.ndarray
) -> None:
    """Count the repeats dropped, per event name."""
    if not dropped.any():
        return
    tracker.collapsed_by_code += np.bincount(codes[dropped], minlength=len(EVENT_NAMES))
    orders = np.flatnonzero(dropped & (codes == EVENT_NAMES.index("Product ordered")))
    if tracker.first_order_repeat is None and len(orders):
        tracker.first_order_repeat = (file, int(rows[orders[0]]))


def sha256_each(texts: pa.Array) -> np.ndarray:
    """(n, 32) uint8: the SHA-256 of each text's UTF-8 bytes."""
    n = len(texts)
    if not n:
        return np.empty((0, 32), np.uint8)
    width = np.int64 if pa.types.is_large_string(texts.type) else np.int32
    offsets = np.frombuffer(texts.buffers()[1], width)[texts.offset : texts.offset + n + 1]
    bounds = offsets.tolist()
    data = memoryview(texts.buffers()[2])
    sha256 = hashlib.sha256
    blob = b"".join([sha256(data[a:b]).digest() for a, b in itertools.pairwise(bounds)])
    return np.frombuffer(blob, np.uint8).reshape(n, 32)


def uuid_texts(digests: np.ndarray) -> pa.Array:
    """RFC 9562 version-8 UUID text of each digest's first 16 bytes, as a string array."""
    n = len(digests)
    raw = digests[:, :16].copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x80  # version 8: custom, hash-based
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 9562 variant
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 0x0F
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    text[:, _HEX_POSITIONS] = _HEX_DIGITS[nibbles]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX_POSITIONS = [i for i in range(36) if i not in (8, 13, 18, 23)]


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
    keys: np.ndarray,
    canonical: pa.Array | None,
    tracker: DuplicateTracker,
    keep: np.ndarray,
) -> dict[int, str]:
    """Exact duplicates (same content hash) among `rows`: dropped and counted, or with
    --keep-duplicates given an id of their own, numbered by occurrence (returned)."""
    if not len(rows):
        return {}
    hi, lo = split_key_blob(keys[rows].tobytes())
    if tracker.previous is not None:
        sent_before = tracker.previous.lookup(hi, lo) >= NO_VALUE
        keep[rows[sent_before]] = False
        tracker.already_sent += int(sent_before.sum())
        rows, hi, lo = rows[~sent_before], hi[~sent_before], lo[~sent_before]
        if not len(rows):
            return {}
    earlier = tracker.content.lookup(hi, lo) >= NO_VALUE
    first = first_occurrences(hi, lo)
    repeat = earlier | (first != np.arange(len(rows)))
    new = np.flatnonzero(~repeat)
    tracker.content.add(hi[new], lo[new])
    if not tracker.keep_duplicates:
        keep[rows[repeat]] = False
        tracker.collapsed += int(repeat.sum())
        return {}
    assert canonical is not None, "--keep-duplicates needs the canonical texts"
    occurrence_ids = {}
    for k in np.flatnonzero(repeat).tolist():
        j = int(rows[k])
        key = (int(hi[k]), int(lo[k]))
        seen = tracker.repeats.get(key, 1) + 1
        tracker.repeats[key] = seen
        occurrence_ids[j] = event_id_from_text(canonical[j].as_py() + f"\noccurrence={seen}")
    return occurrence_ids


_ROW_MASK = (1 << 40) - 1


def canonical_texts(names: pa.Array, texts: Mapping[str, pa.Array]) -> pa.Array:
    """The text hashed into each row's eventId (docs/event-ids.md): the version tag, the
    event name, then one `path=value` line per sent field in path order. `texts` are the
    fields' values as `value_texts` writes them (null: the field is not sent)."""
    return fuse(
        [
            (f"{ID_VERSION_TAG}\nname=", _escape_text(names), ""),
            *((f"\n{p}=", texts[p], "") for p in sorted(texts)),
        ]
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
    if not contains_bytes(array, b"\\\n\r"):
        return array
    out = pc.replace_substring(array, "\\", "\\\\")
    out = pc.replace_substring(out, "\n", "\\n")
    return pc.replace_substring(out, "\r", "\\r")
