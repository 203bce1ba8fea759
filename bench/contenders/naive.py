"""The naive script: pandas `iterrows` and one `httpx` POST per 50 events, one at a time.

    INTEMPT_API_KEY=... python bench/contenders/naive.py --input FILE \\
        --base-url http://127.0.0.1:8787 --org ORG --project PROJECT --source ID
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from typing import Any

import httpx
import pandas as pd

NAMES = {
    "view": "Product viewed",
    "cart": "Added to cart",
    "remove_from_cart": "Removed from cart",
    "purchase": "Product ordered",
}
EVENTS_PER_REQUEST = 50  # the official SDK's default


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--org", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--source", required=True)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    if args.input.endswith(".parquet"):
        frame = pd.read_parquet(args.input)
    else:
        frame = pd.read_csv(args.input, parse_dates=["event_time"])
    url = f"{args.base_url}/v1/{args.org}/projects/{args.project}/sources/{args.source}/track"
    prefix, _, secret = os.environ["INTEMPT_API_KEY"].partition(".")

    sent = 0
    batch: list[dict[str, Any]] = []
    with httpx.Client(auth=(prefix, secret), timeout=30) as client:

        def post() -> None:
            response = client.post(url, json={"track": batch})
            response.raise_for_status()

        for _, row in frame.iterrows():
            data: dict[str, Any] = {"productId": row["product_id"]}
            if not pd.isna(row["quantity"]):
                data["quantity"] = int(row["quantity"])
            data["price"] = float(row["price"])
            data["currency"] = row["currency"]
            item = {
                "eventId": str(uuid.uuid4()),
                "userId": str(row["user_id"]),
                "timestamp": row["event_time"].value // 1_000_000,
                "data": data,
            }
            batch.append({"name": NAMES[row["event_type"]], "payload": [item]})
            if len(batch) == EVENTS_PER_REQUEST:
                post()
                sent += len(batch)
                batch = []
        if batch:
            post()
            sent += len(batch)
    seconds = time.perf_counter() - start
    print(json.dumps({"events": sent, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
