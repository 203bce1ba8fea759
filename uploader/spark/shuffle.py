"""The driver's middle of a Spark job: the shuffle that finds exact duplicates across
partitions (and numbers occurrences with --keep-duplicates), the figures of the derive step,
the refusal of repeated orders with no choice, and the rejected rows written and counted.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from uploader.contract import EVENT_NAMES
from uploader.errors import InputError
from uploader.repeats import unchosen_message
from uploader.results import REJECTS_KEPT, CauseCount, FileFigures
from uploader.spark import tasks
from uploader.validation import RowReject

# What rejects and messages call the input.
NAME = "<Spark DataFrame>"
# The reason of a row whose given eventId an earlier row used (event_ids.py says which).
GIVEN_TWICE = "used by an earlier row (event ids must be unique)"


def shuffle(derived: Any, options: Any, plan: Any, columns: Any) -> tuple[dict[str, Any], Any, Any]:
    """The figures of the derive step, the events left once exact duplicates are collapsed
    across partitions (or numbered, with --keep-duplicates), and the rejected rows."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    events = derived.filter(F.col("kind") == tasks.EVENTS)
    stats: Counter[str] = Counter()
    for row in derived.filter(F.col("kind") == tasks.STATS).select("stats").collect():
        stats.update(orjson.loads(row.stats))
    # A given eventId used by several rows: the first (by file) is sent, the others are
    # rejects, as in a local upload.
    given = events.filter(F.col("given"))
    order = Window.partitionBy("dkey").orderBy("file")
    given_ranked = given.withColumn("n", F.row_number().over(order))
    derived_events = events.filter(~F.col("given"))
    groups = derived_events.groupBy("dkey").agg(
        F.first("code").alias("code"),
        F.first("item").alias("item"),
        F.first("canonical").alias("canonical"),
        F.count("*").alias("count"),
    )
    if options.keep_duplicates:
        numbered_source = groups.withColumn("occurrence", F.explode(F.sequence(F.lit(1), "count")))
    else:
        numbered_source = groups.withColumn("occurrence", F.lit(1))
    firsts = given_ranked.filter(F.col("n") == 1).select(
        "dkey", "code", "item", "canonical", F.lit(1).alias("occurrence")
    )
    numbered = (
        numbered_source.select("dkey", "code", "item", "canonical", "occurrence")
        .unionByName(firsts)
        .mapInArrow(tasks.number_partition, tasks.ddl(tasks.NUMBERED))
    )
    repeats = {}
    if options.duplicates is None:  # what a choice would change (local: repeats.py)
        repeated = groups.filter(F.col("count") > 1).groupBy("code")
        for r in repeated.agg(F.sum(F.col("count") - 1).alias("n")).collect():
            repeats[EVENT_NAMES[r.code]] = int(r.n)
    counts = {r.code: r["count"] for r in numbered.groupBy("code").count().collect()}
    valid = sum(counts.values())
    candidates = events.count()
    # A given eventId used by an earlier row: a reject, as in a local upload (which also
    # names that row; a DataFrame's rows have no numbers).
    given_twice = (
        given_ranked.filter(F.col("n") > 1)
        .drop("n")
        .withColumn("kind", F.lit(tasks.REJECTS).cast("tinyint"))
        .withColumn("field", F.lit("eventId"))
        .withColumn("reason", F.lit(GIVEN_TWICE))
        .withColumn("cause", F.lit(GIVEN_TWICE))
    )
    bad_rows = derived.filter(F.col("kind") == tasks.REJECTS)
    rejected = bad_rows.unionByName(given_twice)
    # Counted apart: a count of the union would rank the given eventIds a second time.
    repeated_given = given_twice.count()
    figures = {
        "rows_read": stats["rows_read"],
        "events_valid": valid,
        "events_rejected": bad_rows.count() + repeated_given,
        "duplicates_collapsed": 0
        if options.keep_duplicates
        else candidates - repeated_given - valid,
        "rows_ignored": stats["rows_ignored"],
        "ids_normalised": stats["ids_normalised"],
        "valid_by_event": {EVENT_NAMES[c]: n for c, n in sorted(counts.items())},
        "files": tuple(
            FileFigures(NAME if name == tasks.NO_FILE else name, rows, plan)
            for name, rows in sorted(
                (k.removeprefix("file:"), v) for k, v in stats.items() if k.startswith("file:")
            )
        )
        or (FileFigures(NAME, 0, plan),),
        "timestamps": {
            k.removeprefix("timestamps:"): v
            for k, v in stats.items()
            if k.startswith("timestamps:")
        },
        "timezone": options.timezone,
        "duplicates": options.duplicates,
        "repeats_by_event": repeats,
    }
    return figures, numbered, rejected


def refuse_unchosen(figures: dict[str, Any]) -> None:
    """'Product ordered' rows that repeat and no --duplicates choice: stop before the first
    request, as a local upload does."""
    repeats = figures["repeats_by_event"].get("Product ordered", 0)
    if figures["duplicates"] is None and repeats:
        distinct = figures["valid_by_event"].get("Product ordered", 0)
        raise InputError(unchosen_message(repeats, distinct, None))


def rejects_of(rejects: Any, columns: Any, path: str | None) -> dict[str, Any]:
    """The rejected rows (shuffle's): all written by Spark to `path` (a folder of CSV), the
    first REJECTS_KEPT brought back, and counted by cause."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    if path:
        schema = StructType([StructField(c, StringType()) for c in columns])
        table = rejects.select(
            "file",
            F.lit(None).cast("long").alias("row"),
            "field",
            "reason",
            F.from_json("original", schema).alias("o"),
        ).select("file", "row", "field", "reason", "o.*")
        table.write.mode("overwrite").option("header", True).csv(path)
    causes = rejects.groupBy("field", "cause").count().collect()
    kept = [
        RowReject(r.file, 0, r.field, r.reason, orjson.loads(r.original or "{}"))
        for r in rejects.limit(REJECTS_KEPT).collect()
    ]
    by_cause = sorted(causes, key=lambda r: -r["count"])
    return {
        "rejects_by_cause": tuple(
            CauseCount(
                f"{r.field}: {r.cause}",
                r["count"],
                tuple(k for k in kept if k.field == r.field)[:3],
            )
            for r in by_cause
        ),
        "rejects_path": path,
        "rejects_seen": sum(r["count"] for r in causes),
        "columns": tuple(columns),
        "kept_rejects": tuple(kept),
    }


def no_rejects(columns: Any, path: str | None) -> dict[str, Any]:
    """What rejects_of returns when Spark failed before it could say."""
    return {
        "rejects_by_cause": (),
        "rejects_path": path,
        "rejects_seen": 0,
        "columns": tuple(columns),
        "kept_rejects": (),
    }
