"""Turn a timestamp column of any kind into integer epoch milliseconds, UTC.

Accepted: ISO 8601 text (with `Z`, an offset, a trailing ` UTC`, or naive), dates, epoch
numbers (unit given or inferred from magnitude), and Arrow/pandas timestamps of any unit and
zone. Naive values are read in the configured time zone. Sub-millisecond parts are
truncated, so the same instant gives the same milliseconds from every format. Column-wise:
only rows with a problem are visited one by one, to word their reason.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from uploader.contract import MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS
from uploader.reasons import Reason

UNITS = ("s", "ms", "us", "ns")
UNIT_NAMES = {"s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds"}
# Milliseconds per unit, as a divisor for integers (us, ns) or a factor for floats (s).
_MS_FACTOR = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "ns": 1e-6}
_INT_DIVISOR = {"ms": 1, "us": 1000, "ns": 1_000_000}
_MS_PER_DAY = 86_400_000
# Seconds beyond which a timestamp is clipped before scaling (about 3 million years).
_FAR_S = 10**14
# More than any zone's offset from UTC: wall times this far outside the window stay out.
_ZONE_SLACK_MS = 2 * _MS_PER_DAY
# A zone designator after a time of day (a bare date like 2024-05-02 has none).
_OFFSET = r"\d:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}(:?\d{2})?|UTC|GMT)$"
# Arrow's time zone rules stop at the end of the tz database's explicit transitions (2037)
# and do not follow its rule for the years after: naive times from then on are localised
# by pandas (found by tests/test_timestamps.py: 2038-04-01 in Europe/Berlin came out an
# hour off).
_ARROW_ZONES_END = datetime(2037, 1, 1)
_EPOCH_TEXT = r"^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$"


@dataclass
class TimestampResult:
    """Milliseconds per row (valid where `present`), a reason per unreadable row, and how
    the rows were read."""

    millis: np.ndarray  # int64
    present: np.ndarray  # bool
    problems: dict[int, str]
    methods: dict[str, int]

    def to_arrow(self) -> pa.Array:
        return pa.array(self.millis, pa.int64(), mask=~self.present)


def to_epoch_ms(
    column: pa.Array, *, unit: str | None, timezone: str, fmt: str | None = None
) -> TimestampResult:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return _from_temporal(column, timezone)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return _from_epoch(column, unit)
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        column = pc.cast(column, pa.string())
    return _from_text(column, unit, timezone, fmt)


def describe_window(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError, OSError):  # beyond year 9999
        return f"around the year {1970 + ms // 31_556_952_000}"


def _from_temporal(column: pa.Array, timezone: str) -> TimestampResult:
    """Arrow dates and timestamps of any unit and zone, in integer arithmetic: no instant is
    too far for it (pandas stops at the years 1677 and 2262)."""
    kind = column.type
    present = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    label = f"{kind}"
    if pa.types.is_date32(kind):
        days = np.asarray(column.cast(pa.int32()).fill_null(0).to_numpy(), dtype=np.int64)
        millis = days * _MS_PER_DAY
    else:
        ticks = column.cast(pa.int64()).fill_null(0).to_numpy()
        unit = "ms" if pa.types.is_date64(kind) else kind.unit
        millis = _ticks_to_ms(np.asarray(ticks, dtype=np.int64), unit)
    if pa.types.is_date(kind) or kind.tz is None:  # wall times: in the configured zone
        label += f", read as {timezone}"
        millis = _wall_to_utc(millis, present, timezone)
    return _in_window(millis, present, None, {label: int(present.sum())}, None)


def _ticks_to_ms(ticks: np.ndarray, unit: str) -> np.ndarray:
    """Epoch ticks to milliseconds, flooring (the same instant gives the same ms from
    every unit); seconds far out of range are clipped first, so that they cannot wrap."""
    if unit == "s":
        return np.asarray(np.clip(ticks, -_FAR_S, _FAR_S) * 1000, dtype=np.int64)
    return np.asarray(ticks // _INT_DIVISOR[unit], dtype=np.int64)


def _wall_to_utc(millis: np.ndarray, present: np.ndarray, timezone: str) -> np.ndarray:
    """Wall-clock milliseconds read in `timezone`, as UTC. Values far outside the window
    stay as they are: they are refused as outside it in any zone."""
    if timezone == "UTC":
        return millis
    near = present & (millis > MIN_TIMESTAMP_MS - _ZONE_SLACK_MS)
    near &= millis < MAX_TIMESTAMP_MS + _ZONE_SLACK_MS
    if near.any():
        wall = pd.Series(pd.to_datetime(millis[near], unit="ms"))
        utc, _ = _series_to_ms(_localize(wall, timezone))
        millis = millis.copy()
        millis[near] = utc
    return millis


def _from_epoch(column: pa.Array, unit: str | None) -> TimestampResult:
    present = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    if pa.types.is_integer(column.type):
        if column.type == pa.uint64() and (pc.max(column).as_py() or 0) >= 2**63:
            return _from_epoch(pc.cast(column, pa.float64(), safe=False), unit)  # int64 wraps
        values = np.asarray(column.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        return _scale_epoch(values.astype(np.float64), values, present, unit)
    floats = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    present &= ~np.isnan(floats)
    integral = present & (np.floor(floats) == floats) & (np.abs(floats) < 2**63)
    ints = np.where(integral, floats, 0).astype(np.int64)
    return _scale_epoch(floats, np.where(integral, ints, 0), present, unit, integral)


def _scale_epoch(
    floats: np.ndarray,
    ints: np.ndarray,
    present: np.ndarray,
    unit: str | None,
    integral: np.ndarray | None = None,
) -> TimestampResult:
    """Epoch numbers to ms in `unit`, or in the one unit (per value) that lands in the window."""
    integral = present if integral is None else integral
    candidates = {u: _to_ms(floats, ints, integral, u) for u in ((unit,) if unit else UNITS)}
    millis = np.zeros(len(floats), dtype=np.int64)
    chosen = np.full(len(floats), "", dtype=object)
    found = np.zeros(len(floats), dtype=bool)
    for u, ms in candidates.items():
        fits = present & ~found & (ms >= MIN_TIMESTAMP_MS) & (ms < MAX_TIMESTAMP_MS)
        millis[fits] = ms[fits]
        chosen[fits] = u
        found |= fits
    problems: dict[int, str] = {}
    for i in np.flatnonzero(present & ~found).tolist():
        shown = _number(float(floats[i]))
        if unit is None:
            problems[i] = Reason(
                f"timestamp {shown} is not a date in 2010-2039 as seconds, "
                "milliseconds, microseconds or nanoseconds since 1970; "
                "give --timestamp-unit if the unit is known",
                "epoch number not in 2010-2039 in any unit",
            )
        else:
            problems[i] = Reason(
                f"timestamp {shown} read as {UNIT_NAMES[unit]} is "
                f"{describe_window(int(candidates[unit][i]))}, "
                "outside 2010-01-01..2039-12-31 (check --timestamp-unit)",
                f"outside 2010-01-01..2039-12-31 read as {UNIT_NAMES[unit]}",
            )
    methods: dict[str, int] = {}
    suffix = "" if unit else " (inferred from magnitude)"
    for u in UNITS:
        count = int((chosen == u).sum())
        if count:
            methods[f"epoch {UNIT_NAMES[u]}{suffix}"] = count
    return TimestampResult(millis, found, problems, methods)


def _to_ms(floats: np.ndarray, ints: np.ndarray, integral: np.ndarray, unit: str) -> np.ndarray:
    with np.errstate(all="ignore"):
        scaled = np.floor(np.round(floats * _MS_FACTOR[unit], 6))
        as_float = np.where(np.isfinite(scaled) & (np.abs(scaled) < 2**62), scaled, -1)
        ms = as_float.astype(np.int64)
    if unit in _INT_DIVISOR:  # whole numbers: exact integer arithmetic, no float rounding
        ms = np.where(integral, ints // _INT_DIVISOR[unit], ms)
    return ms


def _from_text(
    column: pa.Array, unit: str | None, timezone: str, fmt: str | None
) -> TimestampResult:
    text = pc.utf8_trim_whitespace(column)
    n = len(text)
    blank = np.asarray(pc.fill_null(pc.equal(text, ""), True).to_numpy(zero_copy_only=False))
    millis = np.zeros(n, dtype=np.int64)
    present = np.zeros(n, dtype=bool)
    problems: dict[int, str] = {}
    methods: dict[str, int] = {}

    def merge(part: TimestampResult, where: np.ndarray) -> None:
        millis[where] = part.millis
        present[where] = part.present
        problems.update({int(where[j]): reason for j, reason in part.problems.items()})
        for label, count in part.methods.items():
            if count:
                methods[label] = methods.get(label, 0) + count

    if fmt is None and not blank.any():
        fast = _iso_fast(text, timezone)
        if fast is not None:
            return fast

    is_epoch = np.asarray(
        pc.fill_null(pc.match_substring_regex(text, _EPOCH_TEXT), False).to_numpy(
            zero_copy_only=False
        )
    )
    is_epoch &= ~blank
    epoch_idx = np.flatnonzero(is_epoch)
    if len(epoch_idx):
        merge(_from_epoch(_epoch_numbers(text.take(pa.array(epoch_idx))), unit), epoch_idx)

    date_idx = np.flatnonzero(~(is_epoch | blank))
    if len(date_idx):
        values = text.take(pa.array(date_idx))
        raw = values.to_pandas()
        if fmt is not None:
            parsed = pd.to_datetime(raw, format=fmt, errors="coerce", utc=False)
            if getattr(parsed.dt, "tz", None) is None:
                parsed = _localize(parsed, timezone)
            ms, ok = _series_to_ms(parsed)
            label = f"text in format {fmt!r}"
            merge(_in_window(ms, ok, raw, {label: int(ok.sum())}, "format"), date_idx)
        else:
            has_zone = np.asarray(
                pc.fill_null(pc.match_substring_regex(values, _OFFSET), False).to_numpy(
                    zero_copy_only=False
                )
            )
            for zoned in (True, False):
                pick = np.flatnonzero(has_zone == zoned)
                if not len(pick):
                    continue
                part = raw.iloc[pick]
                if zoned:
                    subset = values.take(pa.array(pick))
                    cleaned = pc.replace_substring_regex(subset, r"\s*(UTC|GMT)$", "+00:00")
                    parsed = pd.to_datetime(
                        cleaned.to_pandas(), format="ISO8601", errors="coerce", utc=True
                    )
                    label = "ISO 8601 text with zone"
                else:
                    naive = pd.to_datetime(part, format="ISO8601", errors="coerce")
                    parsed = _localize(naive, timezone)
                    label = f"ISO 8601 text without zone, read as {timezone}"
                ms, ok = _series_to_ms(parsed)
                merge(_in_window(ms, ok, part, {label: int(ok.sum())}, "iso"), date_idx[pick])
    return TimestampResult(millis, present, problems, methods)


def _iso_fast(text: pa.Array, timezone: str) -> TimestampResult | None:
    """Every value ISO 8601 with a zone after a time of day, or every value without a zone,
    parsed by Arrow itself (no pandas): the common export, at a tenth of the cost. None when
    the column is anything else; the general path then reads it value by value."""
    n = len(text)
    zoned = pa.timestamp("ns", "UTC")
    if pc.all(pc.match_substring(text, ":")).as_py():  # a time of day, as _OFFSET needs
        cleaned = pc.replace_substring(text, " UTC", "+00:00")
        with suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
            parsed = pc.cast(cleaned, zoned)
            return _fast_result(parsed, "ISO 8601 text with zone", n)
    with suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
        naive = pc.cast(text, pa.timestamp("ns"))
        label = f"ISO 8601 text without zone, read as {timezone}"
        if timezone == "UTC":
            return _fast_result(naive, label, n)
        latest = pc.max(naive).as_py()
        if latest is None or latest < _ARROW_ZONES_END:
            # A wall time that occurs twice (autumn) is read as the first; one that does
            # not exist (spring) as the first instant after the gap, as _localize does.
            local = pc.assume_timezone(naive, timezone, ambiguous="earliest", nonexistent="latest")
            return _fast_result(local, label, n)
    return None


def _fast_result(parsed: pa.Array, label: str, n: int) -> TimestampResult:
    nanos = np.asarray(pc.cast(parsed, pa.int64()).to_numpy(zero_copy_only=False), np.int64)
    millis = np.floor_divide(nanos, 1_000_000)
    return _in_window(millis, np.ones(n, dtype=bool), None, {label: n}, None)


def _epoch_numbers(text: pa.Array) -> pa.Array:
    """Epoch text as int64 when every value is a whole number that fits (exact: a double
    has 53 bits), else as float64."""
    try:
        return pc.cast(text, pa.int64())
    except pa.ArrowInvalid:
        return pc.cast(text, pa.float64())


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _localize(series: pd.Series, timezone: str) -> pd.Series:
    # A wall time that occurs twice (autumn DST change) is read as the first occurrence;
    # one that does not exist (spring change) is moved forward to the first valid instant.
    localized: pd.Series = series.dt.tz_localize(
        timezone, ambiguous=np.ones(len(series), dtype=bool), nonexistent="shift_forward"
    )
    return localized


def _series_to_ms(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Epoch milliseconds of zoned date-times, in integer arithmetic in the series' own unit:
    pandas parses text far from now (year 1, 9999) in microseconds or seconds, and going
    through nanoseconds would overflow."""
    values = series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
    present = ~np.isnat(values)
    unit = np.datetime_data(values.dtype)[0]
    ticks = np.where(present, values.astype(np.int64), 0)
    return _ticks_to_ms(ticks, unit), present


def _in_window(
    millis: np.ndarray,
    present: np.ndarray,
    raw: pd.Series | None,
    methods: dict[str, int],
    how: str | None,
) -> TimestampResult:
    problems: dict[int, str] = {}
    if how is not None and raw is not None:
        for i in np.flatnonzero(~present).tolist():
            problems[i] = _unreadable(raw.iloc[i], how)
    outside = present & ((millis < MIN_TIMESTAMP_MS) | (millis >= MAX_TIMESTAMP_MS))
    for i in np.flatnonzero(outside).tolist():
        problems[i] = Reason(
            f"timestamp {describe_window(int(millis[i]))} is outside 2010-01-01..2039-12-31: "
            "the API refuses earlier dates and rewrites later ones to the upload time",
            "outside 2010-01-01..2039-12-31",
        )
    return TimestampResult(millis, present & ~outside, problems, methods)


def _unreadable(value: object, how: str) -> str:
    if how == "format":
        return Reason(
            f"timestamp {value!r} does not match --timestamp-format",
            "does not match --timestamp-format",
        )
    return Reason(
        f"timestamp {value!r} is not an ISO 8601 date-time (e.g. 2024-05-02 14:38:24) "
        "or epoch number; give --timestamp-format for other layouts",
        "not an ISO 8601 date-time or epoch number",
    )
