"""Turn a timestamp column of any kind into integer epoch milliseconds, UTC.

Accepted: ISO 8601 text (with `Z`, an offset, a trailing ` UTC`, or naive), dates, epoch
numbers (unit given or inferred from magnitude), and Arrow/pandas timestamps of any unit and
zone. Naive values are read in the configured time zone. Sub-millisecond parts are
truncated, so the same instant gives the same milliseconds from every format.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from uploader.contract import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS

MS_PER_UNIT = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
# A zone designator after a time of day (a bare date like 2024-05-02 has none).
_OFFSET = r"\d:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}(:?\d{2})?|UTC|GMT)$"
EPOCH = pd.Timestamp(0, tz="UTC")
_EPOCH_TEXT = r"^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$"


@dataclass
class TimestampResult:
    """Milliseconds per row (None: absent), a reason per unreadable row, and how rows were read."""

    millis: list[int | None]
    problems: dict[int, str]
    methods: dict[str, int]


def to_epoch_ms(
    column: pa.Array, *, unit: str | None, timezone: str, fmt: str | None = None
) -> TimestampResult:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return _from_temporal(column, timezone)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return _from_epoch(column.to_numpy(zero_copy_only=False), unit)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _from_text(column, unit, timezone, fmt)
    return _from_text(pc.cast(column, pa.string()), unit, timezone, fmt)


def describe_window(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError, OSError):  # beyond year 9999
        return f"around the year {1970 + ms // 31_556_952_000}"


def _from_temporal(column: pa.Array, timezone: str) -> TimestampResult:
    series = column.to_pandas()
    label = f"{column.type}"
    if pa.types.is_date(column.type):
        series = pd.to_datetime(series)
    aware = getattr(series.dt, "tz", None) is not None
    if not aware:
        series = _localize(series, timezone)
        label += f", read as {timezone}"
    millis = _series_to_ms(series)
    return _checked(millis, [None] * len(millis), {label: int(series.notna().sum())}, None)


def _from_text(
    column: pa.Array, unit: str | None, timezone: str, fmt: str | None
) -> TimestampResult:
    text = pc.utf8_trim_whitespace(column)
    blank = pc.fill_null(pc.equal(text, ""), True)
    is_epoch = pc.and_not(pc.match_substring_regex(text, _EPOCH_TEXT), blank)
    n = len(text)
    millis: list[int | None] = [None] * n
    problems: dict[int, str] = {}
    methods: dict[str, int] = {}

    epoch_idx = np.flatnonzero(is_epoch.to_numpy(zero_copy_only=False))
    if len(epoch_idx):
        numbers = pd.to_numeric(text.take(pa.array(epoch_idx)).to_pandas(), errors="coerce")
        sub = _from_epoch(numbers.to_numpy(dtype="float64"), unit)
        _merge(sub, epoch_idx, millis, problems, methods)

    dated = pc.invert(pc.or_(is_epoch, blank)).to_numpy(zero_copy_only=False)
    date_idx = np.flatnonzero(dated)
    if len(date_idx):
        values = text.take(pa.array(date_idx))
        raw = values.to_pandas()
        if fmt is not None:
            parsed = pd.to_datetime(raw, format=fmt, errors="coerce", utc=False)
            if getattr(parsed.dt, "tz", None) is None:
                parsed = _localize(parsed, timezone)
            label = f"text in format {fmt!r}"
            sub = _checked(_series_to_ms(parsed), list(raw), {label: 0}, "format")
            sub.methods = {label: int(parsed.notna().sum())}
            _merge(sub, date_idx, millis, problems, methods)
        else:
            has_zone = pc.match_substring_regex(values, _OFFSET).to_numpy(zero_copy_only=False)
            for zoned in (True, False):
                pick = np.flatnonzero(has_zone == zoned)
                if not len(pick):
                    continue
                part = raw.iloc[pick]
                if zoned:
                    cleaned = part.str.replace(r"\s*(UTC|GMT)$", "+00:00", regex=True)
                    parsed = pd.to_datetime(cleaned, format="ISO8601", errors="coerce", utc=True)
                    label = "ISO 8601 text with zone"
                else:
                    parsed = _localize(
                        pd.to_datetime(part, format="ISO8601", errors="coerce"), timezone
                    )
                    label = f"ISO 8601 text without zone, read as {timezone}"
                sub = _checked(_series_to_ms(parsed), list(part), {}, "iso")
                sub.methods = {label: int(parsed.notna().sum())}
                _merge(sub, date_idx[pick], millis, problems, methods)
    return TimestampResult(millis, problems, methods)


def _from_epoch(values: np.ndarray, unit: str | None) -> TimestampResult:
    values = values.astype("float64", copy=False)
    n = len(values)
    millis: list[int | None] = [None] * n
    problems: dict[int, str] = {}
    methods: dict[str, int] = {}
    for i, v in enumerate(values.tolist()):
        if v != v:  # NaN: absent
            continue
        chosen = unit or _infer_unit(v)
        if chosen is None:
            problems[i] = (
                f"timestamp {_number(v)} is not a date in 2010-2039 as seconds, "
                "milliseconds, microseconds or nanoseconds since 1970; "
                "give --timestamp-unit if the unit is known"
            )
            continue
        ms = _scale(v, chosen)
        if not MIN_TIMESTAMP_MS <= ms < MAX_TIMESTAMP_MS:
            problems[i] = (
                f"timestamp {_number(v)} read as {UNIT_NAMES[chosen]} is {describe_window(ms)}, "
                "outside 2010-01-01..2039-12-31 (check --timestamp-unit)"
            )
            continue
        millis[i] = ms
        label = f"epoch {UNIT_NAMES[chosen]}" + ("" if unit else " (inferred from magnitude)")
        methods[label] = methods.get(label, 0) + 1
    return TimestampResult(millis, problems, methods)


def _infer_unit(value: float) -> str | None:
    for unit in ("s", "ms", "us", "ns"):
        ms = _scale(value, unit)
        if MIN_TIMESTAMP_MS <= ms < MAX_TIMESTAMP_MS:
            return unit
    return None


def _scale(value: float, unit: str) -> int:
    if unit in ("us", "ns") and value.is_integer():
        return int(value) // (1000 if unit == "us" else 1_000_000)
    if unit == "ms" and value.is_integer():
        return int(value)
    return int(np.floor(round(value * MS_PER_UNIT[unit], 6)))


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _localize(series: pd.Series, timezone: str) -> pd.Series:
    # A wall time that occurs twice (autumn DST change) is read as the first occurrence;
    # one that does not exist (spring change) is moved forward to the first valid instant.
    localized: pd.Series = series.dt.tz_localize(
        timezone, ambiguous=np.ones(len(series), dtype=bool), nonexistent="shift_forward"
    )
    return localized


def _series_to_ms(series: pd.Series) -> list[int | None]:
    # Floor division truncates sub-millisecond parts the same way for every source unit.
    ms = (series.dt.tz_convert("UTC") - EPOCH) // pd.Timedelta(milliseconds=1)
    return [None if v != v else int(v) for v in ms.tolist()]


def _checked(
    millis: list[int | None], raw: list[object], methods: dict[str, int], how: str | None
) -> TimestampResult:
    problems: dict[int, str] = {}
    out: list[int | None] = []
    for i, ms in enumerate(millis):
        if ms is None:
            if how is not None:
                problems[i] = _unreadable(raw[i], how)
            out.append(None)
        elif not MIN_TIMESTAMP_MS <= ms < MAX_TIMESTAMP_MS:
            problems[i] = (
                f"timestamp {describe_window(ms)} is outside 2010-01-01..2039-12-31: "
                "the API refuses earlier dates and rewrites later ones to the upload time"
            )
            out.append(None)
        else:
            out.append(ms)
    return TimestampResult(out, problems, methods)


def _unreadable(value: object, how: str) -> str:
    if how == "format":
        return f"timestamp {value!r} does not match --timestamp-format"
    return (
        f"timestamp {value!r} is not an ISO 8601 date-time (e.g. 2024-05-02 14:38:24) "
        "or epoch number; give --timestamp-format for other layouts"
    )


def _merge(
    sub: TimestampResult,
    positions: np.ndarray,
    millis: list[int | None],
    problems: dict[int, str],
    methods: dict[str, int],
) -> None:
    where = positions.tolist()
    for j, ms in enumerate(sub.millis):
        millis[where[j]] = ms
    for j, reason in sub.problems.items():
        problems[where[j]] = reason
    for label, count in sub.methods.items():
        if count:
            methods[label] = methods.get(label, 0) + count
