from __future__ import annotations

import csv
import hashlib
import io
import re
from pathlib import Path

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.id_oracle import canonical_text, event_id, number_text, value_text
from uploader.event_ids import canonical_texts, event_id_from_text, value_texts

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ["view", "cart", "remove_from_cart", "purchase"]
UUID8 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "ts": st.integers(1_262_304_000_000, 2_208_988_799_999),
            "event": st.sampled_from(EVENTS),
            "sku": st.text(
                st.characters(codec="utf-8", exclude_categories=["Cs", "Cc", "Zs", "Zl", "Zp"]),
                min_size=1,
                max_size=12,
            ),
            "user": st.integers(1, 10**18),
            "price": st.one_of(st.none(), st.integers(1, 10**6).map(lambda c: c / 100)),
            "qty": st.one_of(st.none(), st.integers(1, 1000)),
        }
    ),
    min_size=1,
    max_size=30,
)


def ids_of(run_plan, inputs, chunk_rows=65_536, **options):
    _, batches, rejects = run_plan(inputs, chunk_rows=chunk_rows, **options)
    assert rejects == []
    return [i for b in batches for i in b.events.ids.to_pylist()]


def as_csv(rows, columns) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for r in rows:
        text = {
            "ts": pd.Timestamp(r["ts"], unit="ms", tz="UTC").isoformat(),
            "event": r["event"],
            "sku": r["sku"],
            "user": str(r["user"]),
            "price": "" if r["price"] is None else repr(r["price"]),
            "qty": "" if r["qty"] is None else str(r["qty"]),
        }
        writer.writerow([text[c] for c in columns])
    return out.getvalue()


def as_table(rows, columns) -> pa.Table:
    arrays = {
        "ts": pa.array([r["ts"] for r in rows], pa.timestamp("ms", tz="UTC")),
        "event": pa.array([r["event"] for r in rows], pa.string()),
        "sku": pa.array([r["sku"] for r in rows], pa.string()),
        "user": pa.array([r["user"] for r in rows], pa.int64()),
        "price": pa.array([r["price"] for r in rows], pa.float64()),
        "qty": pa.array([r["qty"] for r in rows], pa.int64()),
    }
    return pa.table({c: arrays[c] for c in columns})


MAPPING = dict(
    event_column="event",
    mapping=["timestamp=ts", "productId=sku", "userId=user", "data.price=price",
             "data.quantity=qty"],
)  # fmt: skip


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=rows_strategy, order=st.permutations(["ts", "event", "sku", "user", "price", "qty"]),
       chunk_rows=st.integers(1, 7))  # fmt: skip
def test_ids_do_not_depend_on_format_column_order_or_chunk_size(
    tmp_path, run_plan, rows, order, chunk_rows
):
    # Exact duplicates would collapse differently from nothing; make rows unique.
    rows = list({orjson.dumps(r, option=orjson.OPT_SORT_KEYS): r for r in rows}.values())
    natural = ["ts", "event", "sku", "user", "price", "qty"]
    csv_path = tmp_path / "rows.csv"
    csv_path.write_text(as_csv(rows, natural), encoding="utf-8")
    parquet_path = tmp_path / "rows.parquet"
    pq.write_table(as_table(rows, order), parquet_path)
    frame = as_table(rows, order).to_pandas()

    reference = ids_of(run_plan, [csv_path], **MAPPING)
    assert len(set(reference)) == len(rows)
    assert all(UUID8.match(i) for i in reference)
    assert ids_of(run_plan, [parquet_path], chunk_rows, **MAPPING) == reference
    assert ids_of(run_plan, [frame], chunk_rows, **MAPPING) == reference
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text(as_csv(rows, list(order)), encoding="utf-8")
    assert ids_of(run_plan, [shuffled], chunk_rows, **MAPPING) == reference


# Values as they reach the id stage: text (ids and strings, never blank: blank cells are
# absent), whole numbers, doubles of every size and sign, booleans. None: not sent.
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
DOUBLES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 3.0, -2.5, 2.0**53, 2.0**53 + 2, -(2.0**60), 1e-7, 1e-6, 1e10,
                     5e-324, 1.7976931348623157e308, 1e15 + 0.5, 0.1, 94.86]),
    st.integers(-(2**60), 2**60).map(float),
)  # fmt: skip
FIELD_VALUES = {
    "userId": TEXT,
    "data.productId": TEXT,
    "data.note": TEXT,
    "timestamp": st.integers(1_262_304_000_000, 2_208_988_799_999),
    "data.quantity": st.integers(1, 2**62),
    "data.price": DOUBLES,
    "data.gift": st.booleans(),
}
FIELD_TYPES = {
    "userId": pa.string(),
    "data.productId": pa.string(),
    "data.note": pa.string(),
    "timestamp": pa.int64(),
    "data.quantity": pa.int64(),
    "data.price": pa.float64(),
    "data.gift": pa.bool_(),
}
id_rows = st.lists(
    st.tuples(
        st.sampled_from(
            ["Product viewed", "Added to cart", "Removed from cart", "Product ordered"]
        ),
        st.fixed_dictionaries({p: st.one_of(st.none(), v) for p, v in FIELD_VALUES.items()}),
    ),
    min_size=1,
    max_size=20,
)


def product_texts(rows):
    """The column-wise builder (what the uploader hashes) on these rows."""
    names = pa.array([name for name, _ in rows], pa.string())
    texts = {
        path: value_texts(pa.array([values[path] for _, values in rows], FIELD_TYPES[path]))
        for path in FIELD_VALUES
    }
    return canonical_texts(names, texts).to_pylist()


@settings(max_examples=300, deadline=None)
@given(rows=id_rows)
def test_the_column_wise_id_text_is_the_documented_one(rows):
    oracle = [
        canonical_text(name, [(p, v) for p, v in values.items() if v is not None])
        for name, values in rows
    ]
    assert product_texts(rows) == oracle
    assert [event_id_from_text(t) for t in oracle] == [event_id(t) for t in oracle]


@given(value=DOUBLES)
def test_numbers_are_written_to_read_back_as_the_same_double(value):
    written = value_texts(pa.array([value], pa.float64()))[0].as_py()
    assert written == number_text(value)
    assert float(written) == value and orjson.loads(written) == value


@settings(max_examples=200, deadline=None)
@given(row=id_rows.map(lambda rows: rows[0]), data=st.data())
def test_changing_any_sent_value_changes_the_id(row, data):
    name, values = row
    sent = sorted(p for p, v in values.items() if v is not None)
    if not sent:
        return
    path = data.draw(st.sampled_from(sent))
    new = data.draw(FIELD_VALUES[path].filter(lambda v: value_text(v) != value_text(values[path])))
    changed = (name, dict(values, **{path: new}))
    renamed = ("Product viewed" if name != "Product viewed" else "Added to cart", values)
    original, after_change, after_rename = product_texts([row, changed, renamed])
    assert len({event_id(original), event_id(after_change), event_id(after_rename)}) == 3


def test_text_values_cannot_forge_another_field():
    a = canonical_text("Product viewed", [("data.note", "x\nuserId=1")])
    b = canonical_text("Product viewed", [("data.note", "x"), ("userId", "1")])
    assert a != b


def test_worked_example_in_the_docs_is_true(run_plan):
    doc = (ROOT / "docs" / "event-ids.md").read_text()
    text = canonical_text(
        "Product ordered",
        [("userId", "100123"), ("timestamp", 1759277856000), ("data.productId", "SKU-00191"),
         ("data.quantity", 3), ("data.price", 94.86), ("data.currency", "USD")],
    )  # fmt: skip
    assert f"```\n{text}\n```" in doc
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert digest in doc
    expected = event_id_from_text(text)
    assert f"eventId = {expected}" in doc
    for sample in ("interactions.csv", "interactions.parquet"):
        _, batches, _ = run_plan([ROOT / "sample_data" / sample])
        assert batches[0].events.ids[0].as_py() == expected


def test_the_documented_hex_recipe_matches():
    text = "uploader-event-id/v1\nname=Product viewed"
    h = hashlib.sha256(text.encode()).hexdigest()
    recipe = f"{h[0:8]}-{h[8:12]}-8{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"
    assert recipe == event_id_from_text(text)


DUPES = (
    "ts,event,sku,user\n"
    + "2024-05-02T14:38:24Z,view,S1,u1\n" * 3
    + "2024-05-02T14:38:24Z,view,S2,u1\n"
)


def test_exact_duplicates_collapse_by_default(write_csv, run_plan):
    tally, batches, _ = run_plan([write_csv(DUPES)])
    assert tally.duplicates_collapsed == 2
    assert [r for b in batches for r in b.events.rows.tolist()] == [1, 4]


def test_keep_duplicates_gives_each_occurrence_a_stable_id(write_csv, run_plan):
    path = write_csv(DUPES)
    first = ids_of(run_plan, [path], keep_duplicates=True)
    again = ids_of(run_plan, [path], chunk_rows=1, keep_duplicates=True)
    collapsed = ids_of(run_plan, [path])
    assert first == again
    assert len(set(first)) == 4
    assert first[0] == collapsed[0] and first[3] == collapsed[1]


def test_duplicates_collapse_across_files(write_csv, run_plan):
    a = write_csv(DUPES, "a.csv")
    b = write_csv(DUPES, "b.csv")
    tally, _batches, _ = run_plan([a, b])
    assert tally.events_valid == 2
    assert tally.duplicates_collapsed == 6
