"""The official Intempt Python SDK (`intempt` 2.0.0): `track_batch` with the same events.

Written as an SDK user would: load the export with pandas, build one event per row, hand the
list to `track_batch`. The SDK gives every event its own uuid4 `eventId` (it has no way to
take one from the caller) and one `{"name", "payload": [item]}` group per event.

    INTEMPT_API_KEY=... python bench/contenders/sdk_track_batch.py --input FILE \\
        --base-url http://127.0.0.1:8787 --org ORG --project PROJECT --source ID \\
        [--max-request-events 50] [--max-concurrent-requests 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import pandas as pd
from intempt import Intempt

NAMES = {
    "view": "Product viewed",
    "cart": "Added to cart",
    "remove_from_cart": "Removed from cart",
    "purchase": "Product ordered",
}


def load(path: str) -> pd.DataFrame:
    if path.endswith(".parquet"):
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(path)
        frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True, format="ISO8601")
    # Epoch milliseconds. (Handing the SDK datetimes instead goes through
    # float seconds * 1000 and truncates, which can lose a millisecond.)
    frame["ts"] = frame["event_time"].dt.as_unit("ms").astype("int64")
    return frame


def events_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One SDK event per row, built from whole columns: 5.3 s for 1M rows here, against
    8.6 s with itertuples and pd.isna per row."""
    names = frame["event_type"].map(NAMES).tolist()
    users = frame["user_id"].astype(str).tolist()
    columns = (frame[c].tolist() for c in ("ts", "product_id", "price", "currency", "quantity"))
    events = []
    for name, user, ts, product, price, currency, quantity in zip(
        names, users, *columns, strict=True
    ):
        data: dict[str, Any] = {"productId": product}
        if quantity == quantity:  # not NaN: views have no quantity
            data["quantity"] = int(quantity)
        data["price"] = price
        data["currency"] = currency
        events.append({"event": name, "user_id": user, "timestamp": ts, "properties": data})
    return events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--org", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--max-request-events", type=int, help="SDK default: 50")
    parser.add_argument("--max-concurrent-requests", type=int, help="SDK default: 1")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    url = urlsplit(args.base_url)
    options: dict[str, Any] = {}
    if args.max_request_events:
        options["max_request_events"] = args.max_request_events
    if args.max_concurrent_requests:
        options["max_concurrent_requests"] = args.max_concurrent_requests
    client = Intempt(
        org=args.org,
        project=args.project,
        source_id=args.source,
        api_key=os.environ["INTEMPT_API_KEY"],
        host=url.netloc,
        scheme=url.scheme,
        path=url.path.rstrip("/"),
        **options,
    )
    frame = load(args.input)
    events = events_of(frame)
    del frame
    with client:
        client.track_batch(events)
    seconds = time.perf_counter() - start
    print(json.dumps({"events": len(events), "seconds": seconds, **options}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
