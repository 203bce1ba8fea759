"""Write realistic product-interaction exports of N rows for the benchmark.

    python bench/generate.py 1000000 10000000

writes bench/data/interactions_{N}.parquet (typed) and interactions_{N}.csv (the same rows,
timestamps as ISO 8601 text). Vectorised and chunked: 10M rows never become Python objects.
Deterministic: the same N gives the same bytes. A file that already holds N rows is kept.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

DATA_DIR = Path(__file__).resolve().parent / "data"

# Rows generated and written at a time: one Parquet row group, about 60 MB of Arrow data.
CHUNK_ROWS = 1_000_000
SEED = 20251001

# Shares of a typical e-commerce clickstream: mostly views, few orders.
EVENT_TYPES = ("view", "cart", "remove_from_cart", "purchase")
EVENT_SHARES = (0.70, 0.17, 0.05, 0.08)

# A mid-sized catalogue and customer base; popularity follows a power law (Zipf-like).
PRODUCTS = 50_000
USERS = 1_000_000
PRODUCT_SKEW = 1.1
USER_SKEW = 0.8
FIRST_USER_ID = 10_000_000

CURRENCIES = ("USD", "EUR", "GBP")
CURRENCY_SHARES = (0.80, 0.12, 0.08)

# One calendar year of history, so every size spans the same dates.
START_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
SPAN_MS = 365 * 24 * 3600 * 1000

SCHEMA = pa.schema(
    [
        ("event_time", pa.timestamp("ms", tz="UTC")),
        ("event_type", pa.string()),
        ("product_id", pa.string()),
        ("user_id", pa.int64()),
        ("price", pa.float64()),
        ("quantity", pa.int64()),
        ("currency", pa.string()),
    ]
)


def _power_law_cdf(n: int, skew: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** skew
    cdf: np.ndarray = np.cumsum(weights)
    normalised: np.ndarray = cdf / cdf[-1]
    return normalised


class Catalogue:
    """What stays fixed across chunks: products with prices, users with currencies."""

    def __init__(self, rng: np.random.Generator) -> None:
        # Popularity rank -> product / user, shuffled so SKU-000000 is not the best seller.
        self.product_of_rank = rng.permutation(PRODUCTS)
        self.user_of_rank = rng.permutation(USERS)
        self.product_cdf = _power_law_cdf(PRODUCTS, PRODUCT_SKEW)
        self.user_cdf = _power_law_cdf(USERS, USER_SKEW)
        self.product_ids = pa.array([f"SKU-{i:06d}" for i in range(PRODUCTS)], pa.string())
        self.prices = np.round(rng.lognormal(mean=3.3, sigma=0.8, size=PRODUCTS), 2)
        self.prices = np.maximum(self.prices, 0.99)
        self.user_currency = rng.choice(len(CURRENCIES), size=USERS, p=CURRENCY_SHARES)
        self.currencies = pa.array(CURRENCIES, pa.string())


def generate_chunks(rows: int, chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    """The rows, `chunk_rows` at a time. Timestamps strictly increase over the year, so no
    two rows are exact duplicates and every contender must deliver exactly `rows` events."""
    rng = np.random.default_rng(SEED)
    cat = Catalogue(rng)
    # Gaps of at least 1 ms whose sum over all rows stays inside one year.
    mean_extra_gap = max(SPAN_MS / max(rows, 1) - 1.0, 0.0)
    last_ms = START_MS
    for start in range(0, rows, chunk_rows):
        n = min(chunk_rows, rows - start)
        gaps = 1 + np.floor(rng.exponential(mean_extra_gap, size=n)).astype(np.int64)
        times = last_ms + np.cumsum(gaps)
        last_ms = int(times[-1])

        kinds = rng.choice(len(EVENT_TYPES), size=n, p=EVENT_SHARES)
        product_rank = np.searchsorted(cat.product_cdf, rng.random(n))
        products = cat.product_of_rank[np.minimum(product_rank, PRODUCTS - 1)]
        user_rank = np.searchsorted(cat.user_cdf, rng.random(n))
        users = cat.user_of_rank[np.minimum(user_rank, USERS - 1)]

        # Views carry no quantity; carts mostly 1, orders 1-5, removals 1.
        quantity = np.where(
            kinds == 3,
            rng.integers(1, 6, size=n),
            np.where(kinds == 1, rng.choice([1, 1, 1, 2, 3], size=n), 1),
        )
        table = pa.table(
            {
                "event_time": pa.array(times, pa.timestamp("ms", tz="UTC")),
                "event_type": pa.array(EVENT_TYPES, pa.string()).take(pa.array(kinds)),
                "product_id": cat.product_ids.take(pa.array(products)),
                "user_id": pa.array(users.astype(np.int64) + FIRST_USER_ID, pa.int64()),
                "price": pa.array(cat.prices[products], pa.float64()),
                "quantity": pa.array(quantity.astype(np.int64), pa.int64(), mask=kinds == 0),
                "currency": cat.currencies.take(pa.array(cat.user_currency[users])),
            },
            schema=SCHEMA,
        )
        yield table


def _as_csv(table: pa.Table) -> pa.Table:
    """Timestamps as ISO 8601 text with milliseconds and Z, as warehouse exports write them."""
    text = pc.strftime(table["event_time"], format="%Y-%m-%dT%H:%M:%SZ")
    return table.set_column(0, pa.field("event_time", pa.string()), text)


def parquet_rows(path: Path) -> int | None:
    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except (OSError, pa.ArrowException):
        return None


def csv_rows(path: Path) -> int | None:
    """Data lines of a CSV (header excluded), counted in 8 MB blocks."""
    try:
        with path.open("rb") as f:
            lines = sum(block.count(b"\n") for block in iter(lambda: f.read(8 << 20), b""))
    except OSError:
        return None
    return lines - 1


def data_paths(rows: int) -> tuple[Path, Path]:
    return DATA_DIR / f"interactions_{rows}.parquet", DATA_DIR / f"interactions_{rows}.csv"


def generate(rows: int, log: bool = True) -> tuple[Path, Path]:
    """Write both files for `rows` unless they already hold that many rows."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    parquet_path, csv_path = data_paths(rows)
    need_parquet = parquet_rows(parquet_path) != rows
    need_csv = csv_rows(csv_path) != rows
    if not need_parquet and not need_csv:
        if log:
            print(f"{rows:,} rows: {parquet_path.name} and {csv_path.name} exist", flush=True)
        return parquet_path, csv_path

    # Written to temporary names first, so an interrupted run never leaves a short file
    # that a later run would have to recount.
    tmp_parquet = parquet_path.with_suffix(".parquet.tmp")
    tmp_csv = csv_path.with_suffix(".csv.tmp")
    pwriter = pq.ParquetWriter(tmp_parquet, SCHEMA) if need_parquet else None
    csv_file = tmp_csv.open("wb") if need_csv else None
    try:
        if csv_file is not None:
            # Arrow quotes every header name; exports usually do not.
            csv_file.write((",".join(SCHEMA.names) + "\n").encode())
        options = pcsv.WriteOptions(include_header=False, quoting_style="none")
        for table in generate_chunks(rows):
            if pwriter is not None:
                pwriter.write_table(table, row_group_size=CHUNK_ROWS)
            if csv_file is not None:
                pcsv.write_csv(_as_csv(table), csv_file, write_options=options)
    finally:
        if pwriter is not None:
            pwriter.close()
        if csv_file is not None:
            csv_file.close()
    if need_parquet:
        tmp_parquet.replace(parquet_path)
    if need_csv:
        tmp_csv.replace(csv_path)
    if log:
        print(f"{rows:,} rows: wrote {parquet_path.name} and {csv_path.name}", flush=True)
    return parquet_path, csv_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="+", type=int, help="row counts, e.g. 1000000 10000000")
    args = parser.parse_args(argv)
    for rows in args.rows:
        if rows < 1:
            parser.error(f"rows must be positive; got {rows}")
        generate(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
