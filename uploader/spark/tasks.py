"""What a Spark task runs on one partition: the local upload's own stages, on Arrow batches.

Three steps, each a function over a partition's record batches (DataFrame.mapInArrow):
`derive_partition` maps, validates, hashes and writes the items of the rows (build.py's
stages, event_ids.py's ids); `number_partition` gives repeated events their ids (with
--keep-duplicates) and every event its ledger key; `send_partition` packs and sends them
through the local run loop (upload_run.py) with a ledger in the state directory. The exact
duplicates between them are found by the engine's shuffle (job.py). Nothing per row goes
through the driver, and nothing here depends on the command line, the Python API or a
local SQLite file.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from uploader.build import _drop_oversize
from uploader.convert import map_columns
from uploader.errors import UploaderError
from uploader.event_ids import derive_events, event_id_from_text, uuid_texts
from uploader.events import KEY_DTYPE, Events
from uploader.inputs import Source
from uploader.items import item_json
from uploader.mapping import MappingPlan
from uploader.options import Options
from uploader.pipeline import Prepared
from uploader.read import Chunk
from uploader.validation import RowReject, validate_rows

FILE_COLUMN = "__uploader_file"
# Where the DataFrame does not say which file a row came from.
NO_FILE = "<DataFrame>"
EVENTS, REJECTS, STATS = 0, 1, 2

DERIVED = pa.schema(
    [
        ("kind", pa.int8()),
        ("dkey", pa.binary()),  # what exact duplicates share (content, or the given id)
        ("code", pa.int8()),
        ("item", pa.binary()),
        ("canonical", pa.string()),  # only with --keep-duplicates
        ("given", pa.bool_()),
        ("file", pa.string()),
        ("field", pa.string()),
        ("reason", pa.string()),
        ("cause", pa.string()),
        ("original", pa.string()),  # JSON of the row's columns: rejects and given ids
        ("stats", pa.string()),
    ]
)
NUMBERED = pa.schema([("lkey", pa.binary()), ("code", pa.int8()), ("item", pa.binary())])
_SPARK_TYPES = {pa.int8(): "tinyint", pa.binary(): "binary", pa.string(): "string",
                pa.bool_(): "boolean"}  # fmt: skip
SENT = pa.schema(
    [
        ("kind", pa.int8()),
        ("lkey", pa.binary()),
        ("reason", pa.string()),
        ("cause", pa.string()),
        ("stats", pa.string()),
    ]
)


def ddl(schema: pa.Schema) -> str:
    """The schema as Spark's DDL (what mapInArrow takes)."""
    return ", ".join(f"{f.name} {_SPARK_TYPES[f.type]}" for f in schema)


def ledger_key(event_id: str) -> bytes:
    return hashlib.sha256(event_id.encode("utf-8")).digest()[:10]


# step 1 -----------------------------------------------------------------------------------


def derive_partition(
    batches: Iterator[pa.RecordBatch], plan: MappingPlan, options: Options
) -> Iterator[pa.RecordBatch]:
    """Bad rows become rejects; anything else fails the task, naming the partition's files
    (Spark retries it, then fails the job with that message)."""
    files: set[str] = set()
    try:
        yield from _derive(batches, plan, options, files)
    except UploaderError:
        raise
    except Exception as exc:
        named = ", ".join(sorted(files)) or NO_FILE
        raise UploaderError(
            f"a partition of {named} failed to be read or derived: {type(exc).__name__}: {exc}"
        ) from exc


def _derive(
    batches: Iterator[pa.RecordBatch], plan: MappingPlan, options: Options, files: set[str]
) -> Iterator[pa.RecordBatch]:
    stats: Counter[str] = Counter()
    for batch in batches:
        table = pa.Table.from_batches([batch])
        of_rows = table.column(FILE_COLUMN).combine_chunks()
        table = table.drop_columns([FILE_COLUMN])
        for name in pc.unique(of_rows).to_pylist():
            part = (
                table
                if pc.count_distinct(of_rows).as_py() == 1
                else table.filter(pc.equal(of_rows, name))
            )
            file = name or NO_FILE
            files.add(file)
            source = Source(file, "table", tuple(part.column_names))
            chunk = Chunk(source, part, pa.array(np.zeros(part.num_rows, np.int64)))
            mapped = map_columns(chunk, plan, options)
            valid, rejects = validate_rows(mapped, plan)
            candidates = derive_events(mapped, valid, keep_canonical=options.keep_duplicates)
            candidates = _drop_oversize(candidates, mapped, options.max_request_bytes, rejects)
            stats["rows_read"] += part.num_rows
            stats[f"file:{file}"] += part.num_rows
            stats["rows_ignored"] += len(mapped.ignored)
            stats["ids_normalised"] += mapped.normalised_ids
            for how, count in mapped.timestamp_methods.items():
                stats[f"timestamps:{how}"] += count
            yield _events_batch(candidates, file)
            if rejects:
                yield rejects_batch(rejects)
    yield pa.RecordBatch.from_pylist(
        [{"kind": STATS, "stats": orjson.dumps(dict(stats)).decode()}], schema=DERIVED
    )


def _events_batch(candidates: Any, file: str) -> pa.RecordBatch:
    n = len(candidates)
    ids = uuid_texts(candidates.digests)
    derived = candidates.derived
    keys = candidates.keys()
    if candidates.given is not None:
        ids = pc.if_else(pc.is_null(candidates.given), ids, candidates.given)
        for j in np.flatnonzero(~derived).tolist():
            keys[j] = hashlib.sha256(b"given\n" + str(ids[j].as_py()).encode()).digest()[:10]
    items = item_json(ids, candidates.fields, candidates.texts)
    originals: list[str | None] = [None] * n
    if candidates.originals is not None:
        originals = [
            None if d else orjson.dumps(o, default=str).decode()
            for d, o in zip(derived.tolist(), candidates.originals, strict=True)
        ]
    return pa.RecordBatch.from_arrays(
        [
            pa.array(np.full(n, EVENTS, np.int8)),
            pa.array(keys.tolist(), pa.binary()),
            pa.array(candidates.codes),
            items,
            candidates.canonical if candidates.canonical is not None else pa.nulls(n, pa.string()),
            pa.array(~derived),
            pa.array([file] * n, pa.string()),
            pa.nulls(n, pa.string()),
            pa.nulls(n, pa.string()),
            pa.nulls(n, pa.string()),
            pa.array(originals, pa.string()),
            pa.nulls(n, pa.string()),
        ],
        schema=DERIVED,
    )


def rejects_batch(rejects: list[RowReject]) -> pa.RecordBatch:
    from uploader.reasons import cause_of

    return pa.RecordBatch.from_pylist(
        [
            {
                "kind": REJECTS,
                "file": r.file,
                "field": r.field,
                "reason": str(r.reason),
                "cause": cause_of(r.reason),
                "original": orjson.dumps(r.original, default=str).decode(),
            }
            for r in rejects
        ],
        schema=DERIVED,
    )


# step 2 -----------------------------------------------------------------------------------


def number_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Rows (dkey, code, item, canonical, occurrence): the first occurrence keeps its id,
    the n-th gets the id of its text with `occurrence=n` (docs/event-ids.md)."""
    for batch in batches:
        occurrence = batch.column("occurrence").to_numpy(zero_copy_only=False)
        lkeys = batch.column("dkey").to_pylist()
        items = batch.column("item")
        repeats = np.flatnonzero(occurrence > 1)
        if len(repeats):
            patched = items.to_pylist()
            canonical = batch.column("canonical")
            head = len(b',{"eventId":"')
            for j in repeats.tolist():
                text = canonical[j].as_py() + f"\noccurrence={int(occurrence[j])}"
                event_id = event_id_from_text(text)
                patched[j] = patched[j][:head] + event_id.encode() + patched[j][head + 36 :]
                lkeys[j] = ledger_key(event_id)
            items = pa.array(patched, pa.binary())
        yield pa.RecordBatch.from_arrays(
            [pa.array(lkeys, pa.binary()), batch.column("code"), items], schema=NUMBERED
        )


# step 3 -----------------------------------------------------------------------------------


def send_partition(
    batches: Iterator[pa.RecordBatch], job: str, state_uri: str, sending: dict[str, Any]
) -> Iterator[pa.RecordBatch]:
    """Pack and send a partition's events, recording each answer in the state directory.
    A retried attempt skips what an earlier attempt of the partition delivered."""
    from pyspark import TaskContext

    from uploader.config import AUTO_MAX
    from uploader.resume import ResumePlan
    from uploader.send import RetryPolicy, Sender
    from uploader.spark.state import DirLedger, StateDir
    from uploader.spark.throttle import SharedThrottle
    from uploader.upload_run import UploadRun

    context = TaskContext.get()
    partition = context.partitionId() if context else 0
    attempt = context.attemptNumber() if context else 0
    state = StateDir(state_uri)
    done = set(
        state.keys(".keys", state.job_dir(job), prefix=f"{partition}-").tolist()
        + state.keys(".refused", state.job_dir(job), prefix=f"{partition}-").tolist()
    )
    name = f"<partition {partition}>"
    skipped = Counter[str]()

    def chunks() -> Iterator[Prepared]:
        for batch in batches:
            lkeys = np.array(batch.column("lkey").to_pylist(), dtype=KEY_DTYPE)
            fresh = np.array([k not in done for k in lkeys.tolist()], dtype=bool)
            skipped["already_sent"] += int((~fresh).sum())
            n = len(lkeys)
            events = Events(
                name,
                batch.column("code").to_numpy(zero_copy_only=False).astype(np.int8),
                batch.column("item"),
                pa.nulls(n, pa.string()),
                np.arange(n, dtype=np.int64),
                lkeys,
            )
            if not fresh.all():
                events = events.take(np.flatnonzero(fresh))
            yield Prepared(name, n, None, events, [], np.empty(0, np.int64))

    options: Options = sending["options"]
    pinned = sending["concurrency"]
    limiter = SharedThrottle(
        state,
        job,
        f"{partition}.{attempt}",
        pinned or AUTO_MAX,
        adaptive=pinned is None,
        rate=sending["rate"],
    )
    refused: list[tuple[bytes, str]] = []

    async def run() -> tuple[str, str | None, Any, Any]:
        async with Sender(
            sending["target"],
            sending["credentials"],
            policy=RetryPolicy(max_retry_time=sending["max_retry_time"]),
            limiter=limiter,
        ) as sender:
            loop = UploadRun(
                ResumePlan((), {}),
                options,
                DirLedger(state, job, partition, attempt),
                sender,
                chunks=chunks(),
                on_rejects=lambda rejects: refused.extend((b"", str(r.reason)) for r in rejects),
            )
            status, message = await loop.run()
            return status, message, loop.delivery, sender.stats

    status, message, delivery, stats = asyncio.run(run())
    if status != "completed":
        raise UploaderError(message or status)
    figures = {
        "events_sent": delivery.events_sent,
        "events_refused": delivery.events_refused,
        "by_event": dict(delivery.by_event),
        "refused_causes": dict(delivery.refused_causes),
        "requests": stats.requests,
        "retries": stats.retries,
        "status_counts": {str(k): v for k, v in stats.status_counts.items()},
        "already_sent": skipped["already_sent"],
        "concurrency_highest": limiter.highest,
        "slowed_by_others": limiter.slowed_by_others,
    }
    rows = [{"kind": STATS, "stats": orjson.dumps(figures).decode()}]
    rows += [{"kind": REJECTS, "reason": reason, "cause": reason} for _, reason in refused]
    yield pa.RecordBatch.from_pylist(rows, schema=SENT)
