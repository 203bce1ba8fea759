"""Item JSON built column-wise: valid JSON whose values read back as the values given, with
absent fields left out (never null), and the two Arrow helpers under it held to plain Python."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from uploader.contract import TOP_LEVEL_FIELDS
from uploader.event_ids import value_texts
from uploader.items import contains_bytes, fuse, item_json, json_text

# Text that a JSON string literal must escape, or that an encoder could get wrong.
HARD = '"\\/\x00\x01\n\r\t\x1f\x7f\u2028é€😀'
texts = st.text(alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from(HARD)))

# Each optional field the mapping can produce, with the values of its type.
OPTIONAL: dict[str, tuple[pa.DataType, st.SearchStrategy[Any]]] = {
    "userId": (pa.string(), texts),
    "sessionId": (pa.string(), texts),
    "timestamp": (pa.int64(), st.integers(0, 2**62)),
    "data.price": (pa.float64(), st.floats(allow_nan=False, allow_infinity=False)),
    "data.quantity": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "data.gift": (pa.bool_(), st.booleans()),
    "data.category": (pa.string(), texts),
}


@st.composite
def item_columns(draw: st.DrawFn) -> tuple[list[str], dict[str, list[Any]], dict[str, pa.Array]]:
    """(ids, rows of values by path, the columns by path in a random order): some optional
    fields, each with nulls here and there; data.productId always, never null."""
    n = draw(st.integers(1, 8))
    ids = draw(st.lists(texts, min_size=n, max_size=n))
    paths = draw(st.lists(st.sampled_from(sorted(OPTIONAL)), unique=True))
    position = draw(st.integers(0, len(paths)))
    paths.insert(position, "data.productId")
    values: dict[str, list[Any]] = {}
    arrays: dict[str, pa.Array] = {}
    for path in paths:
        if path == "data.productId":
            kind, cell = pa.string(), texts
        else:
            kind, strategy = OPTIONAL[path]
            cell = st.none() | strategy
        values[path] = draw(st.lists(cell, min_size=n, max_size=n))
        arrays[path] = pa.array(values[path], kind)
    return ids, values, arrays


def expected_item(event_id: str, values: dict[str, list[Any]], row: int) -> dict[str, Any]:
    item: dict[str, Any] = {"eventId": event_id}
    for path in TOP_LEVEL_FIELDS:
        if path in values and values[path][row] is not None:
            item[path] = values[path][row]
    data = {"productId": values["data.productId"][row]}
    for path, column in values.items():
        if path.startswith("data.") and column[row] is not None:
            data.setdefault(path.removeprefix("data."), column[row])
    item["data"] = data
    return item


def build(ids: list[str], arrays: dict[str, pa.Array]) -> list[bytes]:
    texts_by_path = {path: value_texts(array) for path, array in arrays.items()}
    built = item_json(pa.array(ids, pa.string()), arrays, texts_by_path)
    assert built.type == pa.binary()
    raw: list[bytes] = built.to_pylist()
    return raw


@given(columns=item_columns())
def test_items_are_json_whose_values_read_back(
    columns: tuple[list[str], dict[str, list[Any]], dict[str, pa.Array]],
) -> None:
    ids, values, arrays = columns
    for row, raw in enumerate(build(ids, arrays)):
        assert raw.startswith(b",{")  # the leading comma events.py relies on
        parsed = orjson.loads(raw[1:])
        expected = expected_item(ids[row], values, row)
        assert parsed == expected
        # Numbers stay numbers, bools bools, text text (3 == 3.0, but "3" is not 3).
        assert kinds(parsed) == kinds(expected)
        assert list(parsed) == list(expected)  # eventId first, data last
        assert next(iter(parsed["data"])) == "productId"


def kinds(item: dict[str, Any]) -> dict[str, str]:
    flat = {**item, **{f"data.{k}": v for k, v in item["data"].items()}}
    del flat["data"]
    return {
        path: "bool" if isinstance(v, bool) else "text" if isinstance(v, str) else "number"
        for path, v in flat.items()
    }


def test_a_null_field_is_left_out_not_written_as_null() -> None:
    arrays = {
        "userId": pa.array(["u1", None]),
        "data.productId": pa.array(["p1", "p2"]),
        "data.price": pa.array([None, 2.5]),
    }
    first, second = (orjson.loads(raw[1:]) for raw in build(["e1", "e2"], arrays))
    assert first == {"eventId": "e1", "userId": "u1", "data": {"productId": "p1"}}
    assert second == {"eventId": "e2", "data": {"productId": "p2", "price": 2.5}}


def test_an_item_needs_a_product_id() -> None:
    arrays = {"userId": pa.array(["u1"])}
    with pytest.raises(ValueError, match=r"^an item needs data\.productId$"):
        item_json(pa.array(["e1"]), arrays, {p: value_texts(a) for p, a in arrays.items()})


@given(values=st.lists(st.none() | texts, max_size=10), start=st.integers(0, 10))
def test_json_text_is_the_inside_of_a_json_string(values: list[str | None], start: int) -> None:
    array = pa.array(values, pa.string()).slice(min(start, len(values)))
    escaped = json_text(array).to_pylist()
    for given_value, text in zip(array.to_pylist(), escaped, strict=True):
        if given_value is None:
            assert text is None
        else:
            assert orjson.loads(f'"{text}"') == given_value


# --- fuse --------------------------------------------------------------------------------------

literals = st.text(alphabet="ab=;{}", max_size=3)


@st.composite
def segments(draw: st.DrawFn) -> tuple[int, list[tuple[str, list[str | None] | None, str]]]:
    """(rows, segments as plain lists): at least one column; some columns with nulls, and
    rows where every column is null."""
    n = draw(st.integers(1, 6))
    parts = draw(
        st.lists(
            st.tuples(
                literals,
                st.none() | st.lists(st.none() | st.text(max_size=3), min_size=n, max_size=n),
                literals,
            ),
            min_size=1,
            max_size=4,
        ).filter(lambda parts: any(values is not None for _, values, _ in parts))
    )
    return n, parts


def fused_in_python(n: int, parts: list[tuple[str, list[str | None] | None, str]]) -> list[str]:
    out = []
    for row in range(n):
        text = ""
        for before, values, after in parts:
            if values is None:
                text += before + after
            elif values[row] is not None:
                text += before + values[row] + after
        out.append(text)
    return out


@given(case=segments())
def test_fuse_joins_each_row_and_leaves_out_a_null_segment_with_its_literals(
    case: tuple[int, list[tuple[str, list[str | None] | None, str]]],
) -> None:
    n, parts = case
    arrow = [(b, None if v is None else pa.array(v, pa.string()), a) for b, v, a in parts]
    assert fuse(arrow).to_pylist() == fused_in_python(n, parts)


def test_fuse_keeps_a_row_that_is_null_in_every_segment() -> None:
    a = pa.array([None, "1", None])
    b = pa.array([None, None, "2"])
    assert fuse([("a=", a, ";"), ("b=", b, ";")]).to_pylist() == ["", "a=1;", "b=2;"]


# --- contains_bytes ----------------------------------------------------------------------------


@given(
    values=st.lists(st.none() | texts, max_size=12),
    start=st.integers(0, 12),
    length=st.integers(0, 12),
    wanted=st.sets(st.sampled_from(b'"\\\n\r\x00a\xc3'), max_size=3).map(bytes),
    below=st.sampled_from([0, 0x20, 0x80]),
)
def test_contains_bytes_agrees_with_a_plain_scan(
    values: list[str | None], start: int, length: int, wanted: bytes, below: int
) -> None:
    array = pa.array(values, pa.string()).slice(start, length)
    scan = any(
        byte in wanted or byte < below
        for text in array.to_pylist()
        if text is not None
        for byte in text.encode("utf-8")
    )
    assert contains_bytes(array, wanted, below=below) is scan
