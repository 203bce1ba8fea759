"""The plain-loop floor: read, derive ids and serialise the same request bodies, unsent.

A plain, straightforward script (pyarrow + hashlib + orjson, one Python dict per row): what
the upload costs on this machine before any network. Ids follow docs/event-ids.md.

    python bench/contenders/floor_loop.py --input bench/data/interactions_1000000.parquet
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

NAMES = {
    "view": "Product viewed",
    "cart": "Added to cart",
    "remove_from_cart": "Removed from cart",
    "purchase": "Product ordered",
}
BATCH_EVENTS = 500  # the uploader's default events per request
READ_ROWS = 65_536  # rows per record batch read from the file
ID_TAG = "uploader-event-id/v1"


def read_batches(path: str) -> Iterator[pa.RecordBatch]:
    if path.endswith(".parquet"):
        yield from pq.ParquetFile(path).iter_batches(batch_size=READ_ROWS)
        return
    convert = pcsv.ConvertOptions(
        column_types={
            "event_time": pa.timestamp("ms", tz="UTC"),
            "user_id": pa.int64(),
            "quantity": pa.int64(),
        }
    )
    yield from pcsv.open_csv(path, convert_options=convert)


def number(value: float) -> float | int:
    """Whole numbers are written without a point (3.0 -> 3), as the uploader sends them."""
    return int(value) if value.is_integer() else value


def event_id(text: str) -> str:
    h = hashlib.sha256(text.encode()).hexdigest()
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-8{h[13:16]}-{variant}{h[17:20]}-{h[20:32]}"


def items(batch: pa.RecordBatch) -> Iterator[tuple[str, dict[str, Any]]]:
    times = batch.column("event_time").cast(pa.int64()).to_pylist()
    kinds = batch.column("event_type").to_pylist()
    products = batch.column("product_id").to_pylist()
    users = batch.column("user_id").to_pylist()
    prices = batch.column("price").to_pylist()
    quantities = batch.column("quantity").to_pylist()
    currencies = batch.column("currency").to_pylist()
    for ts, kind, product, user, price, quantity, currency in zip(
        times, kinds, products, users, prices, quantities, currencies, strict=True
    ):
        name = NAMES[kind]
        user_id = str(user)
        data: dict[str, Any] = {"productId": product}
        lines = [ID_TAG, f"name={name}", f"data.currency={currency}"]
        price = number(price)
        lines.append(f"data.price={price!r}")
        lines.append(f"data.productId={product}")
        if quantity is not None:
            data["quantity"] = quantity
            lines.append(f"data.quantity={quantity}")
        data["price"] = price
        data["currency"] = currency
        lines.append(f"timestamp={ts}")
        lines.append(f"userId={user_id}")
        item = {
            "eventId": event_id("\n".join(lines)),
            "userId": user_id,
            "timestamp": ts,
            "data": data,
        }
        yield name, item


def encode(groups: dict[str, list[dict[str, Any]]]) -> bytes:
    return orjson.dumps({"track": [{"name": n, "payload": p} for n, p in groups.items()]})


def bodies(path: str) -> Iterator[tuple[int, bytes]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    count = 0
    for batch in read_batches(path):
        for name, item in items(batch):
            groups.setdefault(name, []).append(item)
            count += 1
            if count == BATCH_EVENTS:
                yield count, encode(groups)
                groups, count = {}, 0
    if count:
        yield count, encode(groups)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="Parquet or CSV file")
    # Accepted for a uniform command line with the other contenders; nothing is sent.
    for flag in ("--base-url", "--org", "--project", "--source"):
        parser.add_argument(flag)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    events = requests = size = 0
    for count, body in bodies(args.input):
        events += count
        requests += 1
        size += len(body)
    seconds = time.perf_counter() - start
    print(json.dumps({"events": events, "requests": requests, "bytes": size, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
