"""Map stage: decide which column fills which payload field, then convert each chunk's
columns into the values that will be sent.

Detection compares normalised column names (lowercase, letters and digits only) with a
table of common names per field. Conversion is column-wise; a value that cannot be read
becomes a problem for that row (the validation stage turns it into a reject).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from uploader.contract import EVENT_NAMES, canonical_event_name
from uploader.errors import ConfigError, InputError
from uploader.numbers import read_numbers
from uploader.options import IGNORE, Options
from uploader.read import Chunk
from uploader.reasons import Reason
from uploader.timestamps import to_epoch_ms


@dataclass(frozen=True)
class Target:
    path: str  # where the value goes in an item: "userId", "data.productId", …
    kind: str  # "id", "string", "integer", "number", "boolean" or "timestamp"
    aliases: tuple[str, ...] = ()  # normalised column names detected as this field


TARGETS = (
    Target(
        "data.productId",
        "id",
        ("productid", "product", "sku", "productsku", "itemid", "item", "stockcode", "variantid"),
    ),
    Target(
        "userId",
        "id",
        ("userid", "user", "customerid", "customer", "visitorid", "clientid", "email"),
    ),
    Target("profileId", "id", ("profileid",)),
    Target("anotherUserId", "id", ("anotheruserid",)),
    Target("accountId", "id", ("accountid",)),
    Target("sessionId", "id"),
    Target("eventId", "id", ("eventid",)),
    Target(
        "timestamp",
        "timestamp",
        (
            "timestamp", "eventtime", "eventtimestamp", "time", "ts", "datetime", "date",
            "createdat", "occurredat", "invoicedate", "orderdate", "eventdate",
        ),
    ),
    Target("data.quantity", "integer", ("quantity", "qty")),
    Target("data.price", "number", ("price", "unitprice")),
    Target("data.currency", "string", ("currency", "currencycode")),
    Target(
        "data.orderId",
        "id",
        (
            "orderid", "orderno", "invoiceno", "invoice", "invoicenumber", "ordernumber",
            "transactionid",
        ),
    ),
)  # fmt: skip
EVENT_COLUMN_ALIASES = ("eventtype", "event", "eventname", "type", "action", "interactiontype")
# data.<key> types when the mapping does not say: amounts are numbers, *Id keys are ids.
NUMBER_KEYS = ("price", "value", "amount", "revenue", "total", "discount", "tax", "shipping")
_INTEGRAL_TEXT = {".": r"^([+-]?\d+)\.0+$", ",": r"^([+-]?\d+),0+$"}  # by decimal mark
# Integers beyond 2**53 do not survive a round trip through a JSON double: keep them exact.
MAX_EXACT_INT = 2**53


@dataclass(frozen=True)
class FieldPlan:
    path: str
    column: str
    kind: str
    detected: bool  # found by name, not given with --map


@dataclass(frozen=True)
class MappingPlan:
    """How one set of columns becomes items."""

    event: str | None  # the same event for every row, or None: read from event_column
    event_column: str | None
    event_map: tuple[tuple[str, str], ...]
    fields: tuple[FieldPlan, ...]
    ignored: tuple[str, ...]  # columns that are not sent

    def column_of(self, path: str) -> str | None:
        return next((f.column for f in self.fields if f.path == path), None)


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


def normalise_name(column: str) -> str:
    return re.sub(r"[^a-z0-9]", "", column.lower())


def plan_mapping(columns: Sequence[str], options: Options, source_name: str) -> MappingPlan:
    """Resolve every field to a column; raise with the candidates when that is not clear."""
    by_norm: dict[str, list[str]] = {}
    for column in columns:
        by_norm.setdefault(normalise_name(column), []).append(column)
    used: set[str] = set()
    plans: list[FieldPlan] = []

    for fm in options.mapping:
        _require_column(fm.column, columns, f"--map {fm.field}={fm.column}", source_name)
        plans.append(FieldPlan(fm.field, fm.column, _kind_of(fm.field, fm.type), False))
        used.add(fm.column)

    event: str | None = options.event
    event_column: str | None = options.event_column
    if event_column is not None:
        _require_column(event_column, columns, f"--event-column {event_column}", source_name)
    elif event is None:
        event_column = _detect(EVENT_COLUMN_ALIASES, by_norm, used, "the event", source_name)
        if event_column is None:
            raise InputError(
                f"{source_name}: no event column found (looked for event_type, event, "
                "event_name, type, action). Give --event-column COL, or --event NAME when "
                f"every row is the same event (an orders table: --event 'Product ordered'); "
                f"names: {', '.join(repr(n) for n in EVENT_NAMES)}"
            )
    if event_column is not None:
        used.add(event_column)

    mapped = {p.path for p in plans}
    for target in TARGETS:
        if target.path in mapped or not target.aliases:
            continue
        if target.path == "timestamp" and options.no_timestamp:
            continue
        found = _detect(target.aliases, by_norm, used, target.path, source_name)
        if found is not None:
            plans.append(FieldPlan(target.path, found, target.kind, True))
            used.add(found)

    plan = MappingPlan(
        event=event,
        event_column=event_column,
        event_map=options.event_map,
        fields=tuple(plans),
        ignored=tuple(c for c in columns if c not in used),
    )
    _require_fields(plan, options, columns, source_name)
    return plan


def _kind_of(path: str, given: str | None) -> str:
    if given is not None:
        return given
    target = next((t for t in TARGETS if t.path == path), None)
    if target is not None:
        return target.kind
    key = path.removeprefix("data.")
    if key in NUMBER_KEYS:
        return "number"
    return "id" if key.endswith(("Id", "ID", "_id")) else "string"


def _require_column(column: str, columns: Sequence[str], flag: str, source_name: str) -> None:
    if column in columns:
        return
    close = [c for c in columns if normalise_name(c) == normalise_name(column)]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise InputError(
        f"{source_name}: {flag}: no column {column!r}{hint}; "
        f"the columns are {', '.join(repr(c) for c in columns)}"
    )


def _detect(
    aliases: Sequence[str],
    by_norm: dict[str, list[str]],
    used: set[str],
    what: str,
    source_name: str,
) -> str | None:
    found = [c for alias in aliases for c in by_norm.get(alias, []) if c not in used]
    if len(found) > 1:
        flag = "--event-column COL" if what == "the event" else f"--map {_flag_name(what)}=COL"
        raise InputError(
            f"{source_name}: {what} could come from any of the columns "
            f"{', '.join(repr(c) for c in found)}; choose one with {flag}"
        )
    return found[0] if found else None


def _flag_name(path: str) -> str:
    return "productId" if path == "data.productId" else path


def _require_fields(
    plan: MappingPlan, options: Options, columns: Sequence[str], source_name: str
) -> None:
    paths = {p.path for p in plan.fields}
    listing = ", ".join(repr(c) for c in columns)
    if "data.productId" not in paths:
        raise InputError(
            f"{source_name}: no column for productId (looked for product_id, sku, item_id, "
            f"stock_code…); give --map productId=COL. The columns are {listing}"
        )
    if not paths & {"userId", "profileId", "accountId"}:
        raise InputError(
            f"{source_name}: no identity column (looked for user_id, customer_id, visitor_id, "
            f"email, profile_id, account_id); give --map userId=COL (or profileId / accountId). "
            f"The columns are {listing}"
        )
    if "timestamp" not in paths and not options.no_timestamp:
        raise InputError(
            f"{source_name}: no timestamp column (looked for timestamp, event_time, date, "
            "created_at, invoice_date…); give --map timestamp=COL. Without a timestamp the API "
            "stamps the upload time, turning history into today's events: pass --no-timestamp "
            "only if that is what you want"
        )
    if options.event is None and plan.event_column is None:
        raise ConfigError("give --event NAME or --event-column COL")


def map_columns(chunk: Chunk, plan: MappingPlan, options: Options) -> MappedChunk:
    """Convert one chunk's columns into sendable values; record what cannot be read."""
    n = chunk.table.num_rows
    names = pa.array([plan.event] * n, pa.string()) if plan.event else pa.nulls(n, pa.string())
    mapped = MappedChunk(chunk, names, {}, {})
    if plan.event_column is not None:
        event = FieldPlan("name", plan.event_column, "string", False)
        column = _decoded(chunk.table.column(plan.event_column).combine_chunks(), event, mapped)
        _map_event_names(column, plan, mapped)
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
