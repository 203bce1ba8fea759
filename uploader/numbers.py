"""Read a mapped column's numbers exactly, for the mapping stage: never rounded on the way.

| field | sent as | from text | from Arrow integers | from floats |
|---|---|---|---|---|
| `integer` (quantity, `:integer`) | int64 | whole numbers (`3`, `3.0`, `1e3`) exactly; past 2**63-1: too large | as they are | whole values |
| `number` (price, `:number`) | double | read back as written, or refused | exact ones | as they are |

A number field is a double in the JSON body: a value that no double holds exactly as
written (`9007199254740993`, `0.30000000000000001`) is a problem for its row, never
silently rounded; the reason offers `:integer` or `:string`. So a CSV and a Parquet file
of the same values send the same numbers and get the same event ids (an int64 `3` and a
text `3` both go as `3`). Decimals and 32-bit floats are read as the decimal text Arrow
writes for them (`1.50`, `0.1`), like a CSV export of the same column. Decimal commas
(`94,86`) are read with `--decimal ,`.
"""  # noqa: E501

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from uploader.reasons import Reason

INT64_MAX = 2**63 - 1
# Integers up to 2**53 survive a double; beyond, only some do.
EXACT_INT = 2**53
# Significant digits any double keeps: a decimal with no more reads back unchanged (DBL_DIG).
EXACT_DIGITS = 15
# Digits of an integer that always fits int64 (10**18 < 2**63): cast without a check.
SAFE_INT_DIGITS = 18
_INT = r"^[+-]?\d+$"
_WHOLE_WITH_POINT = r"^([+-]?\d+)\.0*$"  # 3.0, 17850.000: whole numbers written as decimals
_DECIMAL_COMMA = r"^[+-]?\d*,\d+$"


class Column:
    """What the reasons name: the field and the column it is read from."""

    def __init__(self, path: str, name: str, kind: str) -> None:
        self.path, self.name, self.kind = path, name, kind

    def problem(self, shown: str, what: str, cause: str) -> Reason:
        return Reason(f"{self.path} {shown} (column {self.name!r}) {what}", cause)

    def not_a_number(self, shown: str) -> Reason:
        return self.problem(shown, "is not a number", "not a number")

    def not_whole(self, shown: str) -> Reason:
        return self.problem(shown, "is not a whole number", "not a whole number")

    def too_large(self, shown: str) -> Reason:
        return self.problem(
            shown,
            "is too large for a 64-bit integer; map it as text (--map "
            f"{self.path}:string={self.name})",
            "too large for a 64-bit integer",
        )

    def inexact(self, shown: str) -> Reason:
        return self.problem(
            shown,
            "has more digits than a JSON number (a double) keeps, so it would be sent "
            f"rounded; map it as an integer (--map {self.path}:integer={self.name}) or as "
            f"text (--map {self.path}:string={self.name})",
            "more digits than a JSON number keeps (would be rounded)",
        )


def read_numbers(
    column: pa.Array, *, path: str, name: str, kind: str, decimal: str = "."
) -> tuple[pa.Array, dict[int, str]]:
    """One value per row, int64 (`kind` "integer") or float64 ("number"), null where absent
    or unreadable; a reason for every row whose value cannot be sent exactly."""
    where = Column(path, name, kind)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_integer(column.type):
        return _from_integers(column, where)
    if pa.types.is_float64(column.type):
        floats = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
        return _from_floats(floats, where)
    text = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
    return _from_text(text, where, decimal)


def _from_integers(column: pa.Array, where: Column) -> tuple[pa.Array, dict[int, str]]:
    problems: dict[int, str] = {}
    if column.type == pa.uint64():
        big = pc.fill_null(pc.greater(column, pa.scalar(INT64_MAX, pa.uint64())), False)
        for i in np.flatnonzero(big.to_numpy(zero_copy_only=False)).tolist():
            problems[i] = where.too_large(str(column[i].as_py()))
        column = pc.if_else(big, pa.scalar(None, pa.uint64()), column)
    ints = pc.cast(column, pa.int64())
    if where.kind == "integer":
        return ints, problems
    valid = ~np.asarray(ints.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    values = np.asarray(ints.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
    for i in np.flatnonzero(valid & (np.abs(values) > EXACT_INT)).tolist():
        if int(float(values[i])) != int(values[i]):
            problems[i] = where.inexact(str(values[i]))
            valid[i] = False
    return pa.array(values.astype(np.float64), pa.float64(), mask=~valid), problems


def _from_floats(floats: np.ndarray, where: Column) -> tuple[pa.Array, dict[int, str]]:
    """Doubles: NaN is absent (pandas writes missing values so), infinities are problems."""
    problems: dict[int, str] = {}
    present = ~np.isnan(floats)
    finite = present & np.isfinite(floats)
    for i in np.flatnonzero(present & ~finite).tolist():
        problems[i] = where.not_a_number(repr(float(floats[i])))
    if where.kind != "integer":
        return pa.array(floats, pa.float64(), mask=~finite), problems
    with np.errstate(invalid="ignore"):
        whole = finite & (np.floor(floats) == floats)
    for i in np.flatnonzero(finite & ~whole).tolist():
        problems[i] = where.not_whole(repr(float(floats[i])))
    large = whole & (np.abs(floats) >= 2.0**63)
    for i in np.flatnonzero(large).tolist():
        problems[i] = where.too_large(repr(float(floats[i])))
    ok = whole & ~large
    ints = np.where(ok, floats, 0).astype(np.int64)
    return pa.array(ints, pa.int64(), mask=~ok), problems


def _from_text(text: pa.Array, where: Column, decimal: str) -> tuple[pa.Array, dict[int, str]]:
    problems: dict[int, str] = {}
    text = pc.utf8_trim_whitespace(text)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    originals = text
    if decimal == ",":
        dotted = _mask(pc.match_substring(text, "."))
        for i in np.flatnonzero(dotted).tolist():
            problems[i] = where.problem(
                repr(text[i].as_py()),
                "is not a number: with --decimal , a '.' is not read (neither as the decimal "
                "mark nor as a thousands separator)",
                "not a number ('.' with --decimal ,)",
            )
        text = pc.if_else(pa.array(dotted), pa.scalar(None, pa.string()), text)
        text = pc.replace_substring(text, ",", ".")
    text = pc.replace_substring_regex(text, _WHOLE_WITH_POINT, r"\1")
    n = len(text)
    present = ~np.asarray(text.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    integral = present & _mask(pc.match_substring_regex(text, _INT))
    ints = np.zeros(n, dtype=np.int64)
    floats = np.full(n, np.nan)
    valid = np.zeros(n, dtype=bool)

    short = integral & (_lengths(text) <= SAFE_INT_DIGITS)
    if short.any():
        idx = np.flatnonzero(short)
        values = pc.cast(text.take(pa.array(idx)), pa.int64()).to_numpy(zero_copy_only=False)
        ints[idx] = values
        safe = (np.abs(values) <= EXACT_INT) | (where.kind == "integer")
        floats[idx[safe]] = values[safe]
        valid[idx[safe]] = True
        short[idx[~safe]] = False  # a double may not hold them: checked one by one
    for i in np.flatnonzero(integral & ~short).tolist():
        _exact_integer(int(text[i].as_py()), i, where, ints, floats, valid, problems)

    rest = np.flatnonzero(present & ~integral)  # 94.86, 1e3, 2.5, junk: column-wise
    if len(rest):
        raw = text.take(pa.array(rest))
        values = _parse_floats(raw)
        finite = np.isfinite(values)
        with np.errstate(invalid="ignore"):
            whole = finite & (np.floor(values) == values)
        if where.kind == "integer":  # 2.5, 1e3: rare where integers are expected
            ok = np.zeros(len(rest), dtype=bool)
            odd = np.ones(len(rest), dtype=bool)
        else:
            long = np.zeros(len(rest), dtype=bool)
            wide = np.flatnonzero(_lengths(raw) > EXACT_DIGITS)  # shorter ones hold fewer
            if len(wide):
                digits = _significant_digits(raw.take(pa.array(wide)))
                long[wide] = _mask(pc.greater(digits, EXACT_DIGITS))
            ok = finite & ~long
            odd = ~ok
        floats[rest[ok]] = values[ok]
        valid[rest[ok]] = True
        for j in np.flatnonzero(odd).tolist():  # only rows with something to say
            i = int(rest[j])
            value, written = float(values[j]), str(raw[j].as_py())
            shown = repr(originals[i].as_py())
            if not finite[j]:
                problems[i] = _unreadable(originals[i].as_py(), where, decimal)
            elif where.kind == "integer" and not whole[j]:
                problems[i] = where.not_whole(shown)
            elif where.kind == "integer":  # 1e3, 2.5e1: whole, written with an exponent
                _exact_integer(_decimal_integer(written), i, where, ints, floats, valid, problems)
            elif Decimal(written) != Decimal(repr(value)):
                problems[i] = where.inexact(shown)
            else:
                floats[i] = value
                valid[i] = True
    if where.kind == "integer":
        return pa.array(ints, pa.int64(), mask=~valid), problems
    return pa.array(floats, pa.float64(), mask=~valid), problems


def _exact_integer(
    value: int,
    i: int,
    where: Column,
    ints: np.ndarray,
    floats: np.ndarray,
    valid: np.ndarray,
    problems: dict[int, str],
) -> None:
    """An integer written as text, kept exactly or refused with a reason."""
    if where.kind == "integer":
        if abs(value) > INT64_MAX:
            problems[i] = where.too_large(str(value))
            return
        ints[i] = value
    elif abs(value) > EXACT_INT and int(float(value)) != value:
        problems[i] = where.inexact(str(value))
        return
    floats[i] = float(value)
    valid[i] = True


def _parse_floats(text: pa.Array) -> np.ndarray:
    """Decimal texts as the nearest doubles (both parsers round correctly); NaN where a
    text is no number at all."""
    try:
        return np.asarray(pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False))
    except pa.ArrowInvalid:  # some junk in the column: pandas sets it aside
        parsed = pd.to_numeric(pd.Series(text.to_pylist(), dtype=object), errors="coerce")
        return np.asarray(parsed, dtype=np.float64)


def _decimal_integer(text: str) -> int:
    try:
        return int(Decimal(text))
    except (InvalidOperation, ValueError, OverflowError):
        return INT64_MAX + 1  # unreadable as a decimal: refused as too large


def _unreadable(original: str, where: Column, decimal: str) -> Reason:
    if decimal == "." and re.match(_DECIMAL_COMMA, original):
        return where.problem(
            repr(original),
            "is not a number; give --decimal , for numbers written with a decimal comma",
            "written with a decimal comma (see --decimal)",
        )
    return where.not_a_number(repr(original))


def _significant_digits(text: pa.Array) -> pa.Array:
    """How many significant digits a decimal text has (an upper bound: leading zeros of the
    fraction count), column-wise."""
    mantissa = pc.replace_substring_regex(text, r"[eE].*$", "")
    mantissa = pc.replace_substring_regex(mantissa, r"(\.\d*?)0+$", r"\1")
    digits = pc.replace_substring_regex(mantissa, r"[^0-9]", "")
    digits = pc.replace_substring_regex(digits, r"^0+", "")
    return pc.fill_null(pc.utf8_length(digits), 0)


def _lengths(text: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False))


def _mask(array: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)
