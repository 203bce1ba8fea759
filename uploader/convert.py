"""Map stage, second half: convert one chunk's columns into the values that will be sent.

Which column fills which field is decided before any row is read (mapping.plan_mapping);
this is the per-chunk part. Conversion is column-wise; a value that cannot be read becomes a
problem for that row (the validation stage turns it into a reject).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from uploader.contract import canonical_event_name
from uploader.mapping import FieldPlan, MappingPlan
from uploader.numbers import read_numbers
from uploader.options import IGNORE, Options
from uploader.read import Chunk
from uploader.reasons import Reason
from uploader.timestamps import to_epoch_ms

_INTEGRAL_TEXT = {".": r"^([+-]?\d+)\.0+$", ",": r"^([+-]?\d+),0+$"}  # by decimal mark
# Integers beyond 2**53 do not survive a round trip through a JSON double: keep them exact.
MAX_EXACT_INT = 2**53


@dataclass
class MappedChunk:
    """One chunk's values, per field, ready for validation."""

    chunk: Chunk
    names: pa.Array  # string; null: unknown event value (a problem) or left out (ignored)
    values: dict[str, pa.Array]  # path -> one value per row; null = absent
    problems: dict[int, tuple[str, str]]  # row index -> (field, reason), the first found
    ignored: set[int] = field(default_factory=set)  # rows left out by --event-map X=ignore
    normalised_ids: int = 0  # id values written as integral floats (17850.0 -> 17850)
    timestamp_methods: dict[str, int] = field(default_factory=dict)


def map_columns(chunk: Chunk, plan: MappingPlan, options: Options) -> MappedChunk:
    """Convert one chunk's columns into sendable values; record what cannot be read."""
    mapped = _with_event_names(chunk, plan)
    for fp in plan.fields:
        column = _decoded(chunk.table.column(fp.column).combine_chunks(), fp, mapped)
        if fp.kind == "timestamp":
            result = to_epoch_ms(
                column,
                unit=options.timestamp_unit,
                timezone=options.timezone,
                fmt=options.timestamp_format,
            )
            mapped.values[fp.path] = result.to_arrow()
            for key, count in result.methods.items():
                mapped.timestamp_methods[key] = mapped.timestamp_methods.get(key, 0) + count
            _note(mapped, fp.path, result.problems)
        elif fp.kind == "id":
            ids, normalised, problems = _ids(column, fp, options.decimal)
            mapped.values[fp.path] = ids
            mapped.normalised_ids += normalised
            _note(mapped, fp.path, problems)
        elif fp.kind in ("number", "integer"):
            numbers, problems = read_numbers(
                column, path=fp.path, name=fp.column, kind=fp.kind, decimal=options.decimal
            )
            mapped.values[fp.path] = numbers
            _note(mapped, fp.path, problems)
        elif fp.kind == "boolean":
            flags, problems = _booleans(column, fp)
            mapped.values[fp.path] = flags
            _note(mapped, fp.path, problems)
        else:
            mapped.values[fp.path] = _strings(column)
    return mapped


def event_names(chunk: Chunk, plan: MappingPlan) -> pa.Array:
    """Each row's event name as map_columns gives it (null where there is none to send)."""
    return _with_event_names(chunk, plan).names


def _with_event_names(chunk: Chunk, plan: MappingPlan) -> MappedChunk:
    n = chunk.table.num_rows
    names = pa.array([plan.event] * n, pa.string()) if plan.event else pa.nulls(n, pa.string())
    mapped = MappedChunk(chunk, names, {}, {})
    if plan.event_column is not None:
        event = FieldPlan("name", plan.event_column, "string", False)
        column = _decoded(chunk.table.column(plan.event_column).combine_chunks(), event, mapped)
        _map_event_names(column, plan, mapped)
    return mapped


def _note(mapped: MappedChunk, path: str, problems: dict[int, str]) -> None:
    for i, reason in problems.items():
        mapped.problems.setdefault(i, (path, reason))


def _blank_to_null(text: pa.Array) -> pa.Array:
    return pc.if_else(
        pc.equal(pc.utf8_trim_whitespace(text), ""), pa.scalar(None, pa.string()), text
    )


def _map_event_names(column: pa.Array, plan: MappingPlan, mapped: MappedChunk) -> None:
    text = pc.utf8_trim_whitespace(pc.cast(column, pa.string()))
    encoded = text.dictionary_encode()
    explicit = dict(plan.event_map)
    lowered = {raw.lower(): name for raw, name in plan.event_map}
    raws = encoded.dictionary.to_pylist()
    names = [explicit.get(r) or lowered.get(r.lower()) or canonical_event_name(r) for r in raws]
    sendable = [None if name in (None, IGNORE) else name for name in names]
    mapped.names = pc.take(pa.array(sendable, pa.string()), encoded.indices)
    unsent = np.flatnonzero(
        np.asarray(mapped.names.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    )
    indices = encoded.indices
    for i in unsent.tolist():
        index = indices[i].as_py()
        raw = "" if index is None else raws[index]
        if index is not None and names[index] == IGNORE:
            mapped.ignored.add(i)
        elif not raw:
            mapped.problems.setdefault(i, ("name", "the event column is empty"))
        else:
            mapped.problems.setdefault(
                i,
                (
                    "name",
                    Reason(
                        f"event {raw!r} is not one of the four recommendation events; map it "
                        f"with --event-map '{raw}=Product viewed' (or {IGNORE})",
                        "not one of the four recommendation events (see --event-map)",
                    ),
                ),
            )


def ids_as_text(column: pa.Array, decimal: str = ".") -> pa.Array:
    """Ids read as a productId is (another table's: a catalogue): trimmed text, whole
    floats as integers; null where blank, or where a float may have lost digits."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if not pa.types.is_string(column.type) and not pa.types.is_floating(column.type):
        column = pc.cast(column, pa.string())
    ids, _, _ = _ids(column, FieldPlan("data.productId", "", "id", False), decimal)
    return ids


def _ids(
    column: pa.Array, fp: FieldPlan, decimal: str = "."
) -> tuple[pa.Array, int, dict[int, str]]:
    """Ids as text: trimmed; whole floats (17850.0, or 17850,0 with --decimal ,) as
    integers, counted. A float id that
    is infinite, or of 2**53 or more (its digits may have been lost before the export),
    is a problem, not an id."""
    kind = column.type
    if pa.types.is_floating(kind):
        return _float_ids(column, fp)
    if not pa.types.is_string(kind):  # numbers as Arrow writes them: with a point
        column, decimal = pc.cast(column, pa.string()), "."
    text = pc.utf8_trim_whitespace(column)
    integral = pc.match_substring_regex(text, _INTEGRAL_TEXT[decimal])
    normalised = pc.sum(integral).as_py() or 0
    if normalised:
        text = pc.replace_substring_regex(text, _INTEGRAL_TEXT[decimal], r"\1")
    return _blank_to_null(text), normalised, {}


def _float_ids(column: pa.Array, fp: FieldPlan) -> tuple[pa.Array, int, dict[int, str]]:
    if not pa.types.is_float64(column.type):  # as written: a float32 0.1 is 0.1
        column = pc.cast(pc.cast(column, pa.string()), pa.float64())
    floats = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    present = ~np.isnan(floats)  # NaN: absent, as pandas writes a missing value
    with np.errstate(invalid="ignore"):
        whole = present & (np.floor(floats) == floats)
    small = whole & (np.abs(floats) < MAX_EXACT_INT)
    as_int = pc.cast(pa.array(np.where(small, floats, 0).astype(np.int64)), pa.string())
    texts = pc.if_else(pa.array(small), as_int, pa.scalar(None, pa.string()))
    fractional = np.flatnonzero(present & ~whole)
    if len(fractional):  # rare in an id column: the shortest text that reads back
        shortest = pa.array([repr(float(floats[i])) for i in fractional], pa.string())
        patch = np.full(len(floats), -1)
        patch[fractional] = np.arange(len(fractional))
        texts = pc.if_else(
            pa.array(patch >= 0), shortest.take(pa.array(np.maximum(patch, 0))), texts
        )
    problems: dict[int, str] = {}
    for i in np.flatnonzero(whole & ~small).tolist():
        value = float(floats[i])
        infinite = math.isinf(value)
        problems[i] = Reason(
            f"{fp.path} {value!r} (column {fp.column!r}) is not an id: "
            + (
                "an infinite float"
                if infinite
                else "a float of 2**53 or more, whose digits may have been lost before the "
                "export; export the column as text or as integers"
            ),
            "an infinite float" if infinite else "a float id of 2**53 or more (digits lost)",
        )
    return texts, int(small.sum()), problems


def _decoded(column: pa.Array, fp: FieldPlan, mapped: MappedChunk) -> pa.Array:
    """Dictionary columns as their values; binary ones (strings written without their
    UTF-8 annotation) as text, a value that is not UTF-8 being a problem for its row."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        return column
    try:
        return pc.cast(column, pa.string())
    except pa.ArrowInvalid:
        texts: list[str | None] = []
        for i, value in enumerate(column.to_pylist()):
            try:
                texts.append(None if value is None else value.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(None)
                reason = Reason(
                    f"{fp.path} (column {fp.column!r}) is binary data that is not UTF-8 text",
                    "binary data that is not UTF-8 text",
                )
                mapped.problems.setdefault(i, (fp.path, reason))
        return pa.array(texts, pa.string())


def _strings(column: pa.Array) -> pa.Array:
    text = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
    return _blank_to_null(text)


_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


def _booleans(column: pa.Array, fp: FieldPlan) -> tuple[pa.Array, dict[int, str]]:
    if pa.types.is_boolean(column.type):
        return column, {}
    problems: dict[int, str] = {}
    values: list[bool | None] = []
    for i, v in enumerate(pc.cast(column, pa.string()).to_pylist()):
        text = (v or "").strip().lower()
        if not text:
            values.append(None)
        elif text in _TRUE or text in _FALSE:
            values.append(text in _TRUE)
        else:
            values.append(None)
            problems[i] = Reason(
                f"{fp.path} {v!r} (column {fp.column!r}) is not true or false",
                "not true or false",
            )
    return pa.array(values, pa.bool_()), problems
