"""Validate stage: every mapped row passes the API's contract or becomes a RowReject."""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from uploader.contract import IDENTITY_FIELDS, PRODUCT_FIELD
from uploader.mapping import MappedChunk, MappingPlan

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
        return f"{self.field}: {_without_values(self.reason)}"


def validate_rows(mapped: MappedChunk, plan: MappingPlan) -> tuple[list[int], list[RowReject]]:
    """Indices of the rows that may be sent, and a reject for every other row not ignored."""
    values = mapped.values
    product = values.get(PRODUCT_FIELD)
    identities = [values[f] for f in IDENTITY_FIELDS if f in values]
    another = values.get("anotherUserId")
    timestamps = values.get("timestamp")
    quantities = values.get("data.quantity")
    valid: list[int] = []
    rejects: list[RowReject] = []
    for i in range(len(mapped.names)):
        if i in mapped.ignored:
            continue
        problem = mapped.problems.get(i)
        if problem is None:
            problem = _check_row(i, plan, product, identities, another, timestamps, quantities)
        if problem is None:
            valid.append(i)
        else:
            rejects.append(reject_row(mapped, i, *problem))
    return valid, rejects


def reject_row(mapped: MappedChunk, i: int, field_name: str, reason: str) -> RowReject:
    chunk = mapped.chunk
    original = {name: chunk.table.column(name)[i].as_py() for name in chunk.table.column_names}
    return RowReject(chunk.source.name, chunk.rows[i].as_py(), field_name, reason, original)


def _check_row(
    i: int,
    plan: MappingPlan,
    product: list[Any] | None,
    identities: list[list[Any]],
    another: list[Any] | None,
    timestamps: list[Any] | None,
    quantities: list[Any] | None,
) -> tuple[str, str] | None:
    if product is None or product[i] is None:
        return PRODUCT_FIELD, f"productId is blank (column {plan.column_of(PRODUCT_FIELD)!r})"
    if all(ids[i] is None for ids in identities):
        if another is not None and another[i] is not None:
            return "identity", (
                "only anotherUserId is set; the API needs userId, profileId or accountId"
            )
        columns = [plan.column_of(f) for f in IDENTITY_FIELDS if plan.column_of(f)]
        return "identity", (
            f"no userId, profileId or accountId: {', '.join(map(repr, columns))} blank"
        )
    if timestamps is not None and timestamps[i] is None:
        return "timestamp", f"timestamp is blank (column {plan.column_of('timestamp')!r})"
    if quantities is not None:
        quantity = quantities[i]
        if quantity is not None and (not isinstance(quantity, int) or quantity <= 0):
            return "data.quantity", f"quantity {quantity} is not a positive integer"
    return None


def _without_values(reason: str) -> str:
    """Replace quoted values and numbers so that rejects of one cause count together."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "…", reason)
    return re.sub(r"(?<![\w.])-?\d[\d.:eE+-]*", "N", text)
