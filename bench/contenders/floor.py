"""The floor: the fastest no-send pipeline we know how to write, i.e. the uploader's own.

Arrow reads, column-wise ids and bodies, the worker process beside this one: every request
body of the upload built, none sent, no state file, no rejects file. What an upload costs
on top of this is the cost of delivery and bookkeeping ("x floor" in docs/benchmarks.md).

    python bench/contenders/floor.py --input bench/data/interactions_1000000.parquet
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main() -> int:
    started = time.monotonic()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    args = parser.parse_args()
    from uploader import core, workers
    from uploader.config import build_config

    workers.prestart()
    config = build_config([args.input], command="validate")
    result = core.validate(config)
    seconds = time.monotonic() - started
    print(json.dumps({"events": result.events_valid, "requests": result.requests,
                      "seconds": seconds}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
