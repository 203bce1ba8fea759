"""Look at some of an input's rows to say which columns could fill a field.

Used only when names alone do not settle the mapping (mapping.plan_mapping) and by
`uploader init`. A column is profiled from its values: how many are distinct, whether they
share one shape without spaces (an id), whether they read as timestamps in 2010-2039 (the
reading of timestamps.py itself), whether its few distinct values are event names (those
contract.canonical_event_name knows). Names then only order candidates of equal content.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from uploader.contract import canonical_event_name
from uploader.options import Options
from uploader.timestamps import to_epoch_ms

# Share of a column's values that must share one shape for it to look like an id column:
# a stray value or two (a blank written as "n/a") does not hide an id column.
ID_SHAPE_SHARE = 0.95
# Distinct values an id column has at least (fewer in a sample of fewer rows: half of them):
# a flag or a channel number has a handful.
MIN_DISTINCT_IDS = 10
# Share of a column's values that must read as timestamps in the window.
TIME_SHARE = 0.9
# Distinct values a column of event names has at most: the four events, a few others.
MAX_EVENT_VALUES = 20
# Values quoted in a candidate's description.
VALUES_SHOWN = 4

# Shapes of id values, tried in this order; "decimal" (a price) is not an id.
SHAPES = (
    ("uuid", r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$"),
    ("email", r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
    ("digits", r"^[+-]?\d+(\.0+)?$"),
    ("decimal", r"^[+-]?\d*[.,]\d+$"),
    ("hex", r"^[0-9A-Fa-f]{16,}$"),
    ("code", r"^[A-Za-z0-9][A-Za-z0-9_\-.:/#]*$"),
)
SHAPE_WORDS = {"uuid": "UUIDs", "email": "emails", "digits": "numbers", "hex": "hex strings",
               "code": "codes without spaces"}  # fmt: skip
# Words in column names that order candidates of equal content.
PRODUCT_WORDS = ("product", "prod", "article", "item", "sku", "goods", "variant", "offer",
                 "stock", "ean", "gtin", "asin", "upc", "isbn", "catalog", "catalogue")  # fmt: skip
IDENTITY_WORDS = ("user", "customer", "cust", "client", "visitor", "member", "account",
                  "buyer", "shopper", "person", "email", "profile", "uid", "login")  # fmt: skip
# A session id is no person: it fills sessionId, never userId.
SESSION_WORDS = ("session", "sess", "sid")
TIME_WORDS = ("date", "dat", "time", "ts", "day", "created", "when", "timestamp", "datetime")
EVENT_WORDS = ("event", "type", "action", "kind", "activity", "behavior", "behaviour",
               "interaction", "verb")  # fmt: skip


@dataclass(frozen=True)
class Candidate:
    """A column that could fill a field: what its values look like, one of them, and the
    exact option that maps it."""

    column: str
    found: str
    example: str
    flag: str

    def describe(self) -> str:
        return f"{self.column!r}: {self.found}, e.g. {self.example!r}: {self.flag}"


@dataclass(frozen=True)
class ColumnProfile:
    """What one column's values look like in a sample."""

    column: str
    position: int
    values: int  # not blank
    distinct: int
    example: str
    shape: str | None  # the shape nearly all values share (see SHAPES), if one does
    time: str | None  # how its values read as timestamps, when nearly all do
    time_typed: bool  # dates or date-times written as such (text or typed), not numbers
    few_values: tuple[str, ...]  # its distinct values, most frequent first, when few

    @property
    def id_like(self) -> bool:
        enough = min(MIN_DISTINCT_IDS, max(2, math.ceil(self.values / 2)))
        usable = self.shape not in (None, "decimal")
        return usable and self.distinct >= enough and not self.time_typed

    @property
    def event_names(self) -> tuple[str, ...]:
        return tuple(v for v in self.few_values if canonical_event_name(v) is not None)


def profile_columns(table: pa.Table, options: Options) -> dict[str, ColumnProfile]:
    return {
        name: _profile(name, i, table.column(name).combine_chunks(), options)
        for i, name in enumerate(table.column_names)
    }


def _profile(name: str, position: int, column: pa.Array, options: Options) -> ColumnProfile:
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    text = _as_text(column)
    if text is None:  # lists, records, binary data: nothing to suggest
        return ColumnProfile(name, position, 0, 0, "", None, None, False, ())
    text = pc.utf8_trim_whitespace(text)
    present = text.filter(pc.fill_null(pc.not_equal(text, ""), False))
    values = len(present)
    if not values:
        return ColumnProfile(name, position, 0, 0, "", None, None, False, ())
    counts = pc.value_counts(present)
    distinct = len(counts)
    few: tuple[str, ...] = ()
    if distinct <= MAX_EVENT_VALUES:
        ordered = sorted(counts.to_pylist(), key=lambda c: -c["counts"])
        few = tuple(str(c["values"]) for c in ordered)
    time, typed = _time(column, present, options)
    return ColumnProfile(
        name, position, values, distinct, str(present[0].as_py()), _shape(present), time,
        typed, few,
    )  # fmt: skip


def _as_text(column: pa.Array) -> pa.Array | None:
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _shape(present: pa.Array) -> str | None:
    """The first shape (most specific first) nearly all values have."""
    for shape, pattern in SHAPES:
        share = (pc.sum(pc.match_substring_regex(present, pattern)).as_py() or 0) / len(present)
        if share >= ID_SHAPE_SHARE:
            return shape
    return None


def _time(column: pa.Array, present: pa.Array, options: Options) -> tuple[str | None, bool]:
    """How the column's values read as timestamps (the most common way), when nearly all
    of them do; and whether they are dates rather than epoch numbers."""
    kind = column.type
    if pa.types.is_boolean(kind):
        return None, False
    source = present if pa.types.is_string(kind) or pa.types.is_large_string(kind) else column
    try:
        result = to_epoch_ms(
            source,
            unit=options.timestamp_unit,
            timezone=options.timezone,
            fmt=options.timestamp_format,
        )
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        return None, False
    if int(result.present.sum()) < TIME_SHARE * len(present) or not result.methods:
        return None, False
    method = max(result.methods.items(), key=lambda m: m[1])[0]
    return method, not method.startswith("epoch")


def rank_candidates(
    kind: str,
    profiles: dict[str, ColumnProfile],
    flag: str,
    *,
    exclude: Collection[str] = (),
    only: Sequence[str] | None = None,
) -> tuple[Candidate, ...]:
    """Columns that could fill `kind` ("event", "productId", "identity", "timestamp"), best
    first; with `only`, those columns, described, in that order. `flag` has a {} for the
    column."""
    if only is not None:
        return tuple(
            Candidate(c, _describe(profiles[c]), profiles[c].example, flag.format(c))
            for c in only
            if c in profiles and profiles[c].values
        )
    scored = []
    for profile in profiles.values():
        if profile.column in exclude or not profile.values:
            continue
        found = _fit(kind, profile)
        if found is not None:
            score, words = found
            scored.append((-score, profile.position, profile, words))
    scored.sort(key=lambda s: (s[0], s[1]))
    return tuple(
        Candidate(p.column, words, p.example, flag.format(p.column)) for *_, p, words in scored
    )


def _fit(kind: str, profile: ColumnProfile) -> tuple[int, str] | None:
    """(score, what the values look like) if the column could fill `kind`."""
    words = _words(profile.column)
    named = {
        "product": bool(words & set(PRODUCT_WORDS)),
        "identity": bool(words & set(IDENTITY_WORDS)),
    }
    if kind in ("productId", "identity") and profile.id_like:
        assert profile.shape is not None
        described = (
            f"{profile.distinct:,} distinct {SHAPE_WORDS[profile.shape]} in {profile.values:,} rows"
        )
        personal = profile.shape in ("email", "uuid", "hex")
        if kind == "productId":
            score = 2 * named["product"] - 2 * named["identity"] - personal
        else:
            session = bool(words & set(SESSION_WORDS))
            score = 2 * named["identity"] - 2 * named["product"] - 2 * session + personal
        return score - (profile.time is not None), described  # epoch numbers: times first
    if kind == "timestamp" and profile.time is not None:
        score = 2 * profile.time_typed + bool(words & set(TIME_WORDS))
        return score, f"read as timestamps ({profile.time})"
    if kind == "event" and profile.few_values:
        known = profile.event_names
        named_event = bool(words & set(EVENT_WORDS))
        if not known and not (named_event and profile.shape != "digits"):
            return None
        shown = ", ".join(
            f"{v!r} ({canonical_event_name(v) or 'not an event name: --event-map'})"
            for v in profile.few_values[:VALUES_SHOWN]
        )
        more = len(profile.few_values) - VALUES_SHOWN
        values = f"{len(profile.few_values)} distinct values: {shown}" + (
            f" and {more} more" if more > 0 else ""
        )
        return 2 * len(known) + named_event, values
    return None


def _describe(profile: ColumnProfile) -> str:
    if profile.time is not None:
        return f"read as timestamps ({profile.time})"
    if profile.id_like and profile.shape is not None:
        return (
            f"{profile.distinct:,} distinct {SHAPE_WORDS[profile.shape]} in {profile.values:,} rows"
        )
    return f"{profile.distinct:,} distinct values in {profile.values:,} rows"


def _words(column: str) -> set[str]:
    """The words of a column name: snake_case, camelCase, kebab-case and spaces alike."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", column)
    return set(re.findall(r"[a-z]+", spaced.lower()))
