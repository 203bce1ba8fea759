"""Write the bundled sample data. Deterministic: the same files on every run and machine.

    python sample_data/generate.py

- interactions.csv / interactions.parquet: the same product interactions, as text and as
  typed columns (int64 user ids, float prices, UTC timestamps).
- orders.csv: an orders table for a backfill: no event column, one row per order line,
  customer ids written as floats by an earlier tool, local times without a zone.
- bad_rows.csv: realistic rows that the uploader must reject, each for its own reason.
"""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
SEED = 20261127
INTERACTIONS = 2_000
ORDERS = 300
START = datetime(2025, 10, 1, tzinfo=UTC)
EVENTS = ["view"] * 14 + ["cart"] * 4 + ["remove_from_cart"] + ["purchase"] * 2
CURRENCIES = ["EUR", "GBP", "USD"]


def interactions(rng: random.Random) -> list[dict[str, object]]:
    rows = []
    for i in range(INTERACTIONS):
        when = START + timedelta(seconds=rng.randrange(0, 60 * 60 * 24 * 30))
        event = rng.choice(EVENTS)
        rows.append(
            {
                "event_time": when,
                "event_type": event,
                "product_id": f"SKU-{rng.randrange(1, 400):05d}",
                "user_id": 100_000 + rng.randrange(0, 250),
                "price": round(rng.uniform(1, 120), 2),
                "quantity": rng.randint(1, 4) if event != "view" else None,
                "currency": rng.choice(CURRENCIES),
                "session": f"s{rng.randrange(10**6):06d}-{i % 7}",
            }
        )
    rows.sort(key=lambda r: r["event_time"])  # type: ignore[arg-type, return-value]
    return rows


def write_interactions(rows: list[dict[str, object]]) -> None:
    with open(HERE / "interactions.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(rows[0].keys())
        for r in rows:
            when = r["event_time"]
            assert isinstance(when, datetime)
            text = dict(r, event_time=when.strftime("%Y-%m-%dT%H:%M:%SZ"))
            writer.writerow("" if v is None else v for v in text.values())
    table = pa.table(
        {
            "event_time": pa.array([r["event_time"] for r in rows], pa.timestamp("ms", "UTC")),
            "event_type": pa.array([r["event_type"] for r in rows], pa.string()),
            "product_id": pa.array([r["product_id"] for r in rows], pa.string()),
            "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
            "price": pa.array([r["price"] for r in rows], pa.float64()),
            "quantity": pa.array([r["quantity"] for r in rows], pa.int64()),
            "currency": pa.array([r["currency"] for r in rows], pa.string()),
            "session": pa.array([r["session"] for r in rows], pa.string()),
        }
    )
    pq.write_table(table, HERE / "interactions.parquet", row_group_size=500)


def write_orders(rng: random.Random) -> None:
    with open(HERE / "orders.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["OrderNo", "OrderDate", "CustomerID", "StockCode", "Quantity", "UnitPrice"]
        )
        when = datetime(2023, 1, 3, 9, 0)
        for order in range(ORDERS):
            when += timedelta(minutes=rng.randrange(5, 600))
            customer = f"{17000 + rng.randrange(0, 900)}.0"
            for _ in range(rng.randint(1, 4)):
                writer.writerow(
                    [
                        f"{540000 + order}",
                        when.strftime("%Y-%m-%d %H:%M:%S"),
                        customer,
                        f"{rng.randrange(20000, 23000)}{rng.choice(['', 'A', 'B'])}",
                        rng.randint(1, 24),
                        f"{rng.uniform(0.3, 15):.2f}",
                    ]
                )


BAD_ROWS = [
    # (reason shown in the docs, row)
    ("fine", ["2025-10-02T10:00:00Z", "view", "SKU-00001", "u-1", "", "e-1", "1"]),
    ("blank productId", ["2025-10-02T10:01:00Z", "view", "  ", "u-1", "", "e-2", "1"]),
    ("no identity", ["2025-10-02T10:02:00Z", "view", "SKU-00002", "", "", "e-3", "1"]),
    ("anotherUserId alone", ["2025-10-02T10:03:00Z", "cart", "SKU-00003", "", "a-9", "e-4", "1"]),
    ("unknown event", ["2025-10-02T10:04:00Z", "wishlist", "SKU-00004", "u-2", "", "e-5", "1"]),
    ("before 2010", ["2009-12-31T23:59:59Z", "view", "SKU-00005", "u-2", "", "e-6", "1"]),
    ("not a date", ["yesterday", "view", "SKU-00006", "u-3", "", "e-7", "1"]),
    ("epoch seconds", ["1759399200", "view", "SKU-00007", "u-3", "", "e-8", "1"]),
    ("negative quantity", ["2025-10-02T10:05:00Z", "cart", "SKU-00008", "u-4", "", "e-9", "-2"]),
    ("quantity not a number",
     ["2025-10-02T10:06:00Z", "cart", "SKU-00009", "u-4", "", "e-10", "two"]),
    ("duplicate eventId", ["2025-10-02T10:07:00Z", "view", "SKU-00010", "u-5", "", "e-1", "1"]),
    ("past 2040", ["2041-01-01T00:00:00Z", "view", "SKU-00011", "u-5", "", "e-11", "1"]),
]  # fmt: skip


def write_bad_rows() -> None:
    with open(HERE / "bad_rows.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["timestamp", "event", "sku", "user_id", "another_user_id", "event_id", "quantity"]
        )
        for _, row in BAD_ROWS:
            writer.writerow(row)
        fh.write("2025-10-02T10:08:00Z,view,SKU-00012,u-6,,e-12,1,unexpected extra column\n")


def main() -> None:
    rng = random.Random(SEED)
    write_interactions(interactions(rng))
    write_orders(rng)
    write_bad_rows()


if __name__ == "__main__":
    main()
