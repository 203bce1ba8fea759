"""Validate stage: every mapped row passes the API's contract or becomes a RowReject."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from uploader.contract import IDENTITY_FIELDS, PRODUCT_FIELD
from uploader.convert import MappedChunk
from uploader.mapping import MappingPlan
from uploader.reasons import Reason, cause_of

# Longest original value quoted back in a reject reason.
VALUE_PREVIEW = 80


@dataclass(frozen=True)
class RowReject:
    """A row that will not be sent, and why. `row` is 1-based in its source file."""

    file: str
    row: int
    field: str
    reason: str
    original: dict[str, Any] = dataclass_field(default_factory=dict, compare=False, repr=False)

    @property
    def kind(self) -> str:
        """The reason without the row's own values, for counting rejects by cause."""
        return f"{self.field}: {cause_of(self.reason)}"


def validate_rows(mapped: MappedChunk, plan: MappingPlan) -> tuple[np.ndarray, list[RowReject]]:
    """Indices of the rows that may be sent, and a reject for every other row not ignored.
    Checks run column-wise; only failing rows are visited to word their reason."""
    n = len(mapped.names)
    values = mapped.values
    failed: dict[int, tuple[str, str]] = dict(mapped.problems)
    product = values.get(PRODUCT_FIELD)
    column = plan.column_of(PRODUCT_FIELD)
    _fail(failed, _nulls(product, n), PRODUCT_FIELD, f"productId is blank (column {column!r})")
    identities = [values[f] for f in IDENTITY_FIELDS if f in values]
    no_identity = np.ones(n, dtype=bool)
    for ids in identities:
        no_identity &= _nulls(ids, n)
    another = values.get("anotherUserId")
    if another is not None:
        only_another = no_identity & ~_nulls(another, n)
        reason = "only anotherUserId is set; the API needs userId, profileId or accountId"
        _fail(failed, only_another, "identity", reason)
    columns = [plan.column_of(f) for f in IDENTITY_FIELDS if plan.column_of(f)]
    reason = f"no userId, profileId or accountId: {', '.join(map(repr, columns))} blank"
    _fail(failed, no_identity, "identity", reason)
    timestamps = values.get("timestamp")
    if timestamps is not None:
        column = plan.column_of("timestamp")
        _fail(failed, _nulls(timestamps, n), "timestamp", f"timestamp is blank (column {column!r})")
    quantities = values.get("data.quantity")
    if quantities is not None:
        not_positive = pc.fill_null(pc.less_equal(quantities, 0), False)
        for i in np.flatnonzero(not_positive.to_numpy(zero_copy_only=False)).tolist():
            shown = _shown(quantities[i].as_py())
            reason = Reason(f"quantity {shown} is not a positive integer", "not a positive integer")
            failed.setdefault(i, ("data.quantity", reason))
    for i in mapped.ignored:  # left out on purpose: counted as ignored, whatever else
        failed.pop(i, None)
    names_missing = _nulls(mapped.names, n)
    ok = ~names_missing
    if failed:
        ok[np.fromiter(failed, dtype=np.int64, count=len(failed))] = False
    rejects = [reject_row(mapped, i, *failed[i]) for i in sorted(failed)]
    return np.flatnonzero(ok), rejects


def _nulls(array: pa.Array | None, n: int) -> np.ndarray:
    if array is None:
        return np.ones(n, dtype=bool)
    return np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)


def _fail(
    failed: dict[int, tuple[str, str]], mask: np.ndarray, field_name: str, reason: str
) -> None:
    for i in np.flatnonzero(mask).tolist():
        failed.setdefault(i, (field_name, reason))


def _shown(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def reject_row(mapped: MappedChunk, i: int, field_name: str, reason: str) -> RowReject:
    chunk = mapped.chunk
    original = {name: _value(chunk.table.column(name)[i]) for name in chunk.table.column_names}
    return RowReject(chunk.source.name, chunk.rows[i].as_py(), field_name, reason, original)


def _value(scalar: pa.Scalar) -> Any:
    try:
        return scalar.as_py()
    except (OverflowError, ValueError, pa.ArrowException):
        # A timestamp beyond Python's datetime (year 9999): its number, with its type.
        return f"{getattr(scalar, 'value', scalar)} ({scalar.type})"
