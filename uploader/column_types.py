"""Which typed columns (Parquet, DataFrames, Arrow tables) can fill which field, checked
before any row is read: a list, a record, a map, a time of day or a duration mapped to a
field stops the run with a message, rather than a cast error on the first chunk. CSV
columns are all text, and text can fill every field.
"""

from __future__ import annotations

import pyarrow as pa

from uploader.errors import InputError
from uploader.inputs import Source
from uploader.mapping import MappingPlan

# What a column's values must be, per kind of field: Arrow type families (see _family).
ACCEPTED = {
    "id": ("text", "integer", "float", "decimal"),
    "string": ("text", "integer", "float", "decimal", "boolean", "date", "timestamp"),
    "number": ("text", "integer", "float", "decimal"),
    "integer": ("text", "integer", "float", "decimal"),
    "boolean": ("text", "integer", "boolean"),
    "timestamp": ("text", "integer", "float", "decimal", "date", "timestamp"),
    "event": ("text", "integer"),
}
_FAMILY_WORDS = {
    "text": "text", "integer": "integers", "float": "floats", "decimal": "decimals",
    "boolean": "booleans", "date": "dates", "timestamp": "timestamps",
    "time": "times of day without a date", "duration": "durations", "list": "lists",
    "struct": "records", "map": "maps", "other": "values of another kind",
}  # fmt: skip


def check_types(plan: MappingPlan, source: Source) -> None:
    """Refuse, before any row is read, a typed column (Parquet, a DataFrame) that cannot
    fill the field it is mapped to: a list, a record, a map, a time of day, a duration."""
    if source.schema is None:  # CSV: every column is text
        return
    types = dict(zip(source.schema.names, source.schema.types, strict=True))
    wanted = [(_label(fp.path), fp.column, fp.kind) for fp in plan.fields]
    if plan.event_column is not None:
        wanted.append(("the event", plan.event_column, "event"))
    for what, column, kind in wanted:
        family = _family(types[column]) if column in types else "text"  # partitions: text
        if family == "null" or family in ACCEPTED[kind]:
            continue
        accepted = ", ".join(_FAMILY_WORDS[f] for f in ACCEPTED[kind])
        raise InputError(
            f"{source.name}: column {column!r} holds {_FAMILY_WORDS[family]} "
            f"({types[column]}), which cannot fill {what}; map a column of "
            f"{accepted} (columns that are not mapped are not sent)"
        )


def _family(kind: pa.DataType) -> str:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    checks = (
        ("null", pa.types.is_null),
        ("text", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)
         or pa.types.is_binary(t) or pa.types.is_large_binary(t) or t == pa.string_view()),
        ("integer", pa.types.is_integer),
        ("float", pa.types.is_floating),
        ("decimal", pa.types.is_decimal),
        ("boolean", pa.types.is_boolean),
        ("date", pa.types.is_date),
        ("timestamp", pa.types.is_timestamp),
        ("time", pa.types.is_time),
        ("duration", pa.types.is_duration),
        ("list", lambda t: pa.types.is_list(t) or pa.types.is_large_list(t)
         or pa.types.is_fixed_size_list(t) or pa.types.is_list_view(t)),
        ("struct", pa.types.is_struct),
        ("map", pa.types.is_map),
    )  # fmt: skip
    return next((name for name, test in checks if test(kind)), "other")


def _label(path: str) -> str:
    return "productId" if path == "data.productId" else path
