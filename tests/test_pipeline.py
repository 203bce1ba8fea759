"""plan_run: the offline stages end to end on small files, with what they count, what they
reject, what the observer sees and the order the batches come in."""

from __future__ import annotations

import orjson
import pyarrow as pa

from uploader.options import build_options
from uploader.pipeline import plan_run
from uploader.progress import Progress
from uploader.read import resolve_sources
from uploader.validation import RowReject

BLANK_SKU = "data.productId: productId is blank (column 'sku')"
MIXED = """ts,event,sku,user_id,qty
2024-05-02T14:38:24Z,view,S1,u1,1
2024-05-02T14:38:25Z,cart,S2,17850.0,2
2024-05-02T14:38:26Z,wishlist,S3,u3,1
2024-05-02T14:38:27Z,view,,u4,1
2024-05-02T14:38:28Z,view,,u5,1
2024-05-02T14:38:29Z,view,,u6,1
2024-05-02T14:38:30Z,view,,u7,1
2024-05-02T14:38:31Z,dance,S8,u8,1
2024-05-02T14:38:32Z,purchase,S9,u9,0
2024-05-02T14:38:24Z,view,S1,u1,1
"""


def export(rows: range, sku: str = "S") -> str:
    lines = [f"2024-05-02T14:{i // 60:02}:{i % 60:02}Z,view,{sku}{i},u{i}" for i in rows]
    return "ts,event,sku,user_id\n" + "\n".join(lines) + "\n"


def test_the_tally_counts_every_row_once(write_csv, run_plan):
    path = write_csv(MIXED)
    tally, batches, rejects = run_plan([path], chunk_rows=3, event_map=["wishlist=ignore"])
    assert tally.rows_read == 10
    assert tally.events_valid == 2
    assert tally.events_rejected == 6
    assert tally.duplicates_collapsed == 1  # the last row repeats the first
    assert tally.rows_ignored == 1  # wishlist
    assert tally.ids_normalised == 1  # 17850.0
    assert tally.by_event == {"Product viewed": 1, "Added to cart": 1}
    assert tally.timestamps == {"ISO 8601 text with zone": 10}
    assert tally.files == {str(path): 10}
    assert tally.requests == len(batches) == 1
    assert tally.bytes == len(batches[0].body)
    assert len(rejects) == tally.events_rejected


def test_rejects_are_counted_by_cause_with_the_first_three_as_examples(write_csv, run_plan):
    path = str(write_csv(MIXED))
    tally, _, rejects = run_plan([path], chunk_rows=3, event_map=["wishlist=ignore"])
    dance = (
        "event 'dance' is not one of the four recommendation events; map it with "
        "--event-map 'dance=Product viewed' (or ignore)"
    )
    assert tally.reject_causes == {
        BLANK_SKU: 4,
        "name: not one of the four recommendation events (see --event-map)": 1,
        "data.quantity: not a positive integer": 1,
    }
    blank = "productId is blank (column 'sku')"
    assert tally.reject_examples == {
        BLANK_SKU: [RowReject(path, row, "data.productId", blank) for row in (4, 5, 6)],
        "name: not one of the four recommendation events (see --event-map)": [
            RowReject(path, 8, "name", dance)
        ],
        "data.quantity: not a positive integer": [
            RowReject(path, 9, "data.quantity", "quantity 0 is not a positive integer")
        ],
    }
    assert [(r.row, r.field) for r in rejects] == [
        (4, "data.productId"),
        (5, "data.productId"),
        (6, "data.productId"),
        (7, "data.productId"),
        (8, "name"),
        (9, "data.quantity"),
    ]
    assert rejects[0].original == {
        "ts": "2024-05-02T14:38:27Z",
        "event": "view",
        "sku": "",  # as read: CSV values stay text
        "user_id": "u4",
        "qty": "1",
    }


def test_malformed_lines_and_oversize_events_are_rejects_not_errors(write_csv, run_plan):
    path = write_csv(
        "ts,event,sku,user_id\n"
        "2024-05-02T14:38:24Z,view,S1,u1\n"
        "2024-05-02T14:38:25Z,view,S2\n"
        f"2024-05-02T14:38:27Z,view,{'X' * 2000},u4\n"
    )
    tally, batches, rejects = run_plan([path], max_request_bytes=1024)
    assert tally.rows_read == 3  # the malformed line is a row read
    assert tally.events_valid == 1
    assert [(r.row, r.field, r.reason) for r in rejects] == [
        (2, "row", "malformed CSV line: expected 4 columns, found 3: 2024-05-02T14:38:25Z,view,S2"),
        (
            3,
            "row",
            "the event alone makes a 2164-byte request, above --max-request-bytes 1024; "
            "shorten its values or raise the limit",
        ),
    ]
    assert tally.reject_causes == {
        "row: malformed CSV line (wrong number of fields)": 1,
        "row: too large for one request (see --max-request-bytes)": 1,
    }
    assert len(batches) == 1


def test_batches_come_in_send_order_across_files(write_csv, run_plan):
    first = write_csv(export(range(1, 8)), "a.csv")
    second = write_csv(export(range(1, 6), sku="T"), "b.csv")
    tally, batches, _ = run_plan([first, second], chunk_rows=4, batch_size=3)
    assert [b.seq for b in batches] == list(range(5))
    # Full batches across chunks; a request never mixes two inputs.
    assert [(b.file, len(b)) for b in batches] == [
        (str(first), 3), (str(first), 3), (str(first), 1), (str(second), 3), (str(second), 2)
    ]  # fmt: skip
    sent = [(b.file, row) for b in batches for row in b.events.rows.tolist()]
    assert sent == [(str(first), r) for r in range(1, 8)] + [(str(second), r) for r in range(1, 6)]
    skus = [
        item["data"]["productId"]
        for b in batches
        for group in orjson.loads(b.body)["track"]
        for item in group["payload"]
    ]
    assert skus == [f"S{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 6)]
    assert tally.requests == 5


def test_the_observer_sees_reading_grow_to_the_totals(write_csv, write_parquet):
    csv_path = write_csv(export(range(1, 11)), "a.csv")
    table = pa.table(
        {
            "ts": [f"2024-05-02T15:00:{i:02}Z" for i in range(6)],
            "event": ["view"] * 6,
            "sku": [f"P{i}" for i in range(6)],
            "user_id": ["u1"] * 6,
        }
    )
    parquet_path = write_parquet(table, "b.parquet", row_group_size=2)
    sources = resolve_sources([csv_path, parquet_path])
    seen: list[Progress] = []
    tally = plan_run(sources, build_options(None), observer=seen.append, chunk_rows=4)

    size = csv_path.stat().st_size + parquet_path.stat().st_size
    rows = [p.rows_read for p in seen]
    read = [p.bytes_read for p in seen]
    assert rows == sorted(rows) and rows[-1] == tally.rows_read == 16
    assert read == sorted(read) and read[-1] == size
    assert read[0] < size  # the Parquet file was not read yet
    assert {p.bytes_total for p in seen} == {size}
    assert {p.rows_total for p in seen} == {None}  # a CSV file does not say before it is read
    assert all(p.events_sent == 0 and p.requests == 0 for p in seen)


def test_rows_total_is_known_when_every_input_says(write_parquet):
    table = pa.table(
        {
            "ts": ["2024-05-02T15:00:00Z"] * 5,
            "event": ["view"] * 5,
            "sku": [f"P{i}" for i in range(5)],
            "user_id": ["u1"] * 5,
        }
    )
    path = write_parquet(table, row_group_size=2)
    seen: list[Progress] = []
    plan_run(resolve_sources([path, table]), build_options(None), observer=seen.append)
    assert {p.rows_total for p in seen} == {10}
    assert {p.bytes_total for p in seen} == {None}  # an in-memory table has no size on disk
    assert seen[-1].rows_read == 10
