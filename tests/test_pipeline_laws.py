"""The offline pipeline's laws on any input at all: read -> map -> validate -> ids never
lets out an exception but the project's own (UploaderError), and every row read is
accounted for exactly once: valid, rejected, collapsed as a duplicate or ignored."""

from __future__ import annotations

import csv
import io
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from uploader.errors import UploaderError

LAWFUL = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples in CI every time
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
KNOWN = ["ts", "event", "sku", "user_id", "qty", "price", "note", "event_id"]
GOOD = {  # values that pass, so that examples reach the id stage too
    "ts": ["2024-05-02T14:38:24Z", "1714660704000", "2024-05-02 14:38:24"],
    "event": ["view", "cart", "purchase", "skip"],
    "sku": ["S1", "S2", " S3 "],
    "user_id": ["u1", "17850.0", "42"],
    "qty": ["1", "2", "3.0"],
    "price": ["94.86", "3", "0.1"],
    "note": ["a", "b"],
    "event_id": ["e1", "e2", "e1"],
}
HOSTILE_CELLS = [
    "", " ", "view", "cart", "purchase", "remove_from_cart", "like", "skip", "VIEW ",
    "2024-05-02T14:38:24Z", "2024-05-02 14:38:24", "1714660704", "1714660704000", "0",
    "-1", "1e400", "NaN", "inf", "-0.0", "3.0", "2.5", "94,86", "1.234,5", "9007199254740993",
    "99999999999999999999", "0.30000000000000001", "17850.0", "x\ny", 'say "hi"', "a,b",
    "a;b", "\x00", "é", "€", "\t", "1970-01-01", "9999-12-31T23:59:59Z", "0001-01-01",
]  # fmt: skip


def accounted_for(run_plan: Any, inputs: list[Any], **options: Any) -> None:
    """Run the pipeline; it may refuse the input with an UploaderError, nothing else."""
    try:
        tally, _, rejects = run_plan(inputs, chunk_rows=options.pop("chunk_rows", 7), **options)
    except UploaderError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    event("read, nothing valid" if tally.events_valid == 0 else "read, some events valid")
    assert tally.rows_read == (
        tally.events_valid + tally.events_rejected + tally.duplicates_collapsed + tally.rows_ignored
    )
    assert len(rejects) == tally.events_rejected
    assert all(r.reason and r.field for r in rejects)


OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "event_map": st.just(["skip=ignore", "like=Product viewed"]),
        "keep_duplicates": st.just(True),
        "decimal": st.just(","),
        "delimiter": st.sampled_from([",", ";", "\t"]),
        "encoding": st.sampled_from(["utf-8", "cp1252", "utf-16"]),
        "timezone": st.just("Europe/London"),
        "mapping": st.just(["data.quantity=qty", "data.price=price", "data.note=note"]),
        "chunk_rows": st.integers(1, 5),
    },
)


@LAWFUL
@given(
    header=st.sampled_from([b"", b"ts,event,sku,user_id\n", b"ts;event;sku;user_id;qty\r\n"]),
    body=st.lists(
        st.sampled_from(
            [
                b",",
                b";",
                b"\t",
                b"\n",
                b"\r",
                b"\r\n",
                b'"',
                b"\x00",
                b"\xff",
                b"\xc3\xa9",
                b"\xef\xbb\xbf",
                b"a",
                b"1",
                b"2024-05-02T14:38:24Z",
                b"view",
                b"cart",
                b" ",
                b"9007199254740993",
                b"NaN",
                b"1e400",
            ]
        ),
        max_size=60,
    ).map(b"".join),
    suffix=st.sampled_from([".csv", ".csv.gz", ".parquet", ".tsv"]),
    options=OPTIONS,
)
def test_any_bytes(tmp_path: Path, run_plan: Any, header, body, suffix, options):
    path = tmp_path / f"in{suffix}"
    codec = "gzip" if suffix.endswith(".gz") else None
    with pa.output_stream(str(path), compression=codec) as out:
        out.write(header + body)
    accounted_for(run_plan, [path], **options)


def csv_rows(columns: list[str]) -> st.SearchStrategy[list[list[str]]]:
    def cell(column: str) -> st.SearchStrategy[str]:
        good = st.sampled_from(GOOD[column])
        return st.one_of(good, good, good, st.sampled_from(HOSTILE_CELLS))

    whole = st.tuples(*(cell(c) for c in columns)).map(list)
    ragged = st.lists(st.sampled_from(HOSTILE_CELLS), max_size=len(columns) + 2)
    return st.lists(st.one_of(whole, whole, whole, ragged), max_size=12)


@LAWFUL
@given(
    columns=st.one_of(
        st.permutations(KNOWN[:4]),
        st.permutations(KNOWN),
        st.lists(st.sampled_from(KNOWN), min_size=1, max_size=8, unique=True),
    ).map(list),
    quoting=st.booleans(),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]),
    options=OPTIONS,
    data=st.data(),
)
def test_any_csv(tmp_path, run_plan, columns, quoting, delimiter, newline, encoding, options, data):
    rows = data.draw(csv_rows(columns))
    if "mapping" in options:  # map the columns there are
        options["mapping"] = [m for m in options["mapping"] if m.split("=")[1] in columns]
    out = io.StringIO()
    if quoting:  # a proper writer: quotes what needs them
        writer = csv.writer(out, delimiter=delimiter, lineterminator=newline)
        writer.writerow(columns)
        writer.writerows(rows)
    else:  # a naive one: cells joined as they are
        out.write(newline.join(delimiter.join(r) for r in [columns, *rows]) + newline)
    path = tmp_path / "in.csv"
    path.write_bytes(out.getvalue().encode(encoding, errors="replace"))
    accounted_for(run_plan, [path], **options)


GOOD_TYPED = ("ts", "event", "sku", "user_id")


def typed_columns(n: int) -> st.SearchStrategy[dict[str, pa.Array]]:
    def column(values: st.SearchStrategy[Any], kind: pa.DataType) -> st.SearchStrategy[pa.Array]:
        return st.lists(st.one_of(st.none(), values), min_size=n, max_size=n).map(
            lambda vs: pa.array(vs, kind)
        )

    floats = st.floats(allow_nan=True, allow_infinity=True)
    texts = st.sampled_from(HOSTILE_CELLS)

    def good(name: str) -> st.SearchStrategy[pa.Array]:
        values = st.lists(st.sampled_from(GOOD[name]), min_size=n, max_size=n)
        return values.map(lambda vs: pa.array(vs, pa.string()))

    choices = {
        "ts": [
            good("ts"),
            column(st.integers(1262304000000, 2208988799999), pa.timestamp("ms")),
            column(st.integers(-(2**62), 2**62), pa.timestamp("us", tz="UTC")),
            column(st.integers(-(2**53), 2**53), pa.timestamp("s")),  # Parquet: as ms
            column(st.integers(-(2**63), 2**63 - 1), pa.int64()),
            column(floats, pa.float64()),
            column(texts, pa.string()),
            column(st.integers(-(2**31), 2**31 - 1), pa.date32()),
        ],
        "event": [
            good("event"),
            column(st.sampled_from(["view", "cart", "purchase", "skip", "like", ""]), pa.string()),
            column(st.integers(0, 3), pa.int8()),
        ],
        "sku": [good("sku"), column(texts, pa.string()), column(floats, pa.float64())],
        "user_id": [
            good("user_id"),
            column(texts, pa.string()),
            column(floats, pa.float64()),
            column(st.integers(0, 2**64 - 1), pa.uint64()),
            column(
                st.decimals(allow_nan=False, places=0, max_value=10**30, min_value=-(10**30)),
                pa.decimal128(38, 0),
            ),
        ],
        "qty": [
            good("qty"),
            column(st.integers(-(2**63), 2**63 - 1), pa.int64()),
            column(floats, pa.float32()),
            column(texts, pa.string()),
            column(
                st.decimals(allow_nan=False, places=2, max_value=10**20, min_value=-(10**20)),
                pa.decimal128(24, 2),
            ),
        ],
        "price": [good("price"), column(floats, pa.float64()), column(texts, pa.string())],
    }
    hostile = st.fixed_dictionaries({name: st.one_of(*arrays) for name, arrays in choices.items()})
    tame = st.fixed_dictionaries(  # the fields every event needs are fine: the rest is not
        {name: arrays[0] if name in GOOD_TYPED else st.one_of(*arrays)
         for name, arrays in choices.items()}
    )  # fmt: skip
    return st.one_of(tame, hostile)


@LAWFUL
@given(data=st.data(), n=st.integers(0, 12), options=OPTIONS, via_file=st.booleans())
def test_any_typed_table(tmp_path, run_plan, data, n, options, via_file):
    table = pa.table(data.draw(typed_columns(n)))
    inputs: list[Any] = [table]
    if via_file:
        pq.write_table(table, tmp_path / "in.parquet", row_group_size=5)
        inputs = [tmp_path / "in.parquet"]
    options.pop("encoding", None)
    options.pop("delimiter", None)
    if "mapping" in options:  # no note column here
        options["mapping"] = ["data.quantity=qty", "data.price=price"]
    accounted_for(run_plan, inputs, **options)


def test_the_strategies_reach_the_sending_stage(tmp_path, run_plan):
    """A guard against a law that holds only because every input is refused."""
    table = pa.table(
        {
            "ts": pa.array([1714660704000] * 2, pa.timestamp("ms", tz="UTC")),
            "event": ["view", "skip"],
            "sku": ["S1", "S2"],
            "user_id": pa.array([Decimal(1), Decimal(2)], pa.decimal128(38, 0)),
            "qty": pa.array([3.0, math.nan], pa.float32()),
            "price": ["94.86", "1e400"],
        }
    )
    tally, _, rejects = run_plan([table], event_map=["skip=ignore"])
    assert (tally.events_valid, tally.rows_ignored, tally.events_rejected) == (1, 1, 0)
    assert rejects == []
