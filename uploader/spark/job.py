"""The driver's side of a Spark upload: the plan, the shuffle that finds exact duplicates
across partitions, the warm-up, and the figures. Per-row work runs in the tasks (tasks.py).

    derive   every partition: map, validate, hash, write items      -> events, rejects
    shuffle  events grouped by what duplicates share                -> one event (or one per
             (with --keep-duplicates each occurrence numbered)         occurrence), its key
    skip     keys the state directory records as delivered           -> what is left to send
    send     every partition: pack and send, each answer recorded   -> figures, refusals
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import time
import uuid
from collections import Counter
from functools import partial
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from uploader.config import MAPPING_OPTIONS, build_destination, build_settings
from uploader.contract import EVENT_NAMES
from uploader.errors import ConfigError, SendError, UploaderError
from uploader.mapping import plan_mapping
from uploader.results import CauseCount, UploadResult, ValidationResult
from uploader.spark import tasks
from uploader.spark.shuffle import NAME, no_rejects, refuse_unchosen, rejects_of, shuffle
from uploader.spark.state import DirLease, StateDir

# The state directory when none is given (a folder: executors write into it).
DEFAULT_STATE_DIR = ".uploader/spark-state"
# The reason in a Java exception's line: what follows its last "...Exception: ".
JAVA_REASON = re.compile(r".*(?:Exception|Error): (.+)")
MESSAGE_CHARS = 400
SPARK_VALIDATE_OPTIONS = (*MAPPING_OPTIONS, "rejects", "report")
SPARK_UPLOAD_OPTIONS = (
    *SPARK_VALIDATE_OPTIONS,
    "org", "project", "source_id", "api_key", "api_key_file", "base_url", "sandbox",
    "concurrency", "rate", "max_retry_time", "state", "force",
)  # fmt: skip


def validate(df: Any, **options: Any) -> ValidationResult:
    """Read, map and validate a Spark DataFrame on the cluster; nothing is sent."""
    settings = build_settings(command="validate", known=SPARK_VALIDATE_OPTIONS, **options)
    _refuse_unsupported(settings.mapping)
    plan = _plan(df, settings.mapping)
    derived = _derive(df, plan, settings.mapping)
    try:
        figures, numbered, rejected = shuffle(derived, settings.mapping, plan, df.columns)
        events = numbered.count()
        figures["requests"] = math.ceil(events / settings.mapping.batch_size)
        rejects = rejects_of(rejected, df.columns, settings.outputs.rejects)
    except UploaderError:
        raise
    except Exception as exc:  # a task failed past its retries: say why in our words
        raise UploaderError(_task_failure(exc)) from exc
    finally:
        derived.unpersist()
    result = ValidationResult(**figures, **rejects)
    if settings.outputs.report:
        from uploader.sinks import write_json

        write_json(settings.outputs.report, result.to_json())
    return result


def upload(df: Any, **options: Any) -> UploadResult:
    """Upload a Spark DataFrame on the cluster, resumably (see the module's docstring)."""
    options.setdefault("state", DEFAULT_STATE_DIR)
    settings = build_settings(command="upload", known=SPARK_UPLOAD_OPTIONS, **options)
    _refuse_unsupported(settings.mapping)
    if settings.given.get("sandbox") is True:
        raise ConfigError(
            "sandbox=True starts a sandbox in this process; for a Spark job "
            "give a running one (sandbox=sb, in local mode) or a target"
        )
    destination = build_destination(settings)
    target, credentials = destination.target, destination.credentials
    if destination.sandbox is not None:
        from uploader.target import Credentials, Target

        sb = destination.sandbox
        target = Target(sb.base_url, sb.org, sb.project, sb.source)
        credentials = Credentials.from_key(sb.api_key)
    assert target is not None and credentials is not None
    spark = df.sparkSession
    if spark.conf.get("spark.speculation", "false").lower() == "true":
        raise ConfigError(
            "spark.speculation is on: Spark would run a partition twice at once, and both "
            "copies would send its events. Turn it off for this job "
            "(spark.conf.set('spark.speculation', 'false'))"
        )
    plan = _plan(df, settings.mapping)
    state = StateDir(settings.sending.state)
    started = time.monotonic()
    with DirLease(state):
        resent = _possibly_resent(state)  # what a run that died had in flight
        derived = _derive(df, plan, settings.mapping)
        try:
            try:  # before the first request: a failure here sent nothing
                figures, numbered, rejected = shuffle(derived, settings.mapping, plan, df.columns)
                refuse_unchosen(figures)
                done = _delivered(spark, state) if not settings.sending.force else None
            except UploaderError:  # repeated orders, no choice made
                raise
            except Exception as exc:  # a task failed past its retries, the JVM died
                raise UploaderError(_task_failure(exc)) from exc
            todo = numbered if done is None else numbered.join(done, "lkey", "left_anti")
            job = uuid.uuid4().hex[:12]
            sending = {
                "options": settings.mapping,
                "concurrency": settings.sending.concurrency,
                "max_retry_time": settings.sending.max_retry_time,
                "target": target,
                "credentials": credentials,
            }
            try:
                warmed, warm_figures = _warm_up(todo, state, job, sending)
                todo = todo.filter(~todo.lkey.isin(list(warmed))) if warmed else todo
                partitions = max(2, spark.sparkContext.defaultParallelism)
                at_once = min(partitions, spark.sparkContext.defaultParallelism)
                rate = settings.sending.rate
                sending["rate"] = rate / at_once if rate else None
                sent = todo.repartition(partitions, "lkey").mapInArrow(
                    partial(tasks.send_partition, job=job, state_uri=state.uri, sending=sending),
                    tasks.ddl(tasks.SENT),
                )
                rows = sent.collect()
                status, message = "completed", None
            except SendError as exc:  # the warm-up: auth, a wrong address
                rows, status, message = [], "aborted", str(exc)
                warm_figures = Counter()
            except Exception as exc:  # a task failed past its retries, the JVM died
                rows, status, message = [], "aborted", _task_failure(exc)
                warm_figures = Counter()
            try:
                rejects = rejects_of(rejected, df.columns, settings.outputs.rejects)
            except Exception as exc:  # the events sent are in the ledger: a rerun ends it
                if status == "completed":
                    status, message = "aborted", f"writing the rejects: {_task_failure(exc)}"
                rejects = no_rejects(df.columns, settings.outputs.rejects)
        finally:
            with contextlib.suppress(Exception):  # a dead JVM cannot unpersist
                derived.unpersist()
    delivery: Counter[str] = Counter()
    by_event: Counter[str] = Counter()
    refused_causes: Counter[str] = Counter()
    status_counts: Counter[str] = Counter()
    for key, n in warm_figures.items():
        if key.startswith("by_event:"):
            by_event[key.removeprefix("by_event:")] += n
        elif key.startswith("status:"):
            status_counts[key.removeprefix("status:")] += n
        else:
            delivery[key] += n
    for row in rows:
        if row.kind == tasks.STATS:
            part = orjson.loads(row.stats)
            for key in ("events_sent", "events_refused", "requests", "retries", "already_sent",
                        "slowed_by_others"):  # fmt: skip
                delivery[key] += part[key]
            by_event.update(part["by_event"])
            refused_causes.update(part["refused_causes"])
            status_counts.update(part["status_counts"])
    elapsed = time.monotonic() - started
    result = UploadResult(
        **{**figures, "events_rejected": figures["events_rejected"] + delivery["events_refused"]},
        **rejects,
        status=status,
        message=message,
        events_sent=delivery["events_sent"],
        delivered_by_event=dict(by_event),
        events_rejected_by_api=delivery["events_refused"],
        api_rejects_by_cause=tuple(CauseCount(c, n) for c, n in refused_causes.most_common()),
        events_skipped_already_sent=figures["events_valid"]
        - delivery["events_sent"]
        - delivery["events_refused"],
        possibly_resent=resent,
        requests=delivery["requests"],
        retries=delivery["retries"],
        status_counts=dict(status_counts),
        elapsed_s=round(elapsed, 3),
        events_per_s=round(delivery["events_sent"] / elapsed, 1) if elapsed > 0 else 0.0,
        concurrency={
            "mode": "pinned" if sending["concurrency"] else "adaptive",
            "per_task": True,
            # times a task slowed down for another task's 429 (spark/throttle.py)
            "slowed_by_other_tasks": delivery["slowed_by_others"],
        },
    )
    if settings.outputs.report:
        from uploader.sinks import write_json

        write_json(settings.outputs.report, result.to_json())
    return result


def _plan(df: Any, options: Any) -> Any:
    """The mapping, and the typed columns that cannot fill their fields refused, before
    the job starts (as plan_sources does for local inputs)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    from uploader.column_types import check_types
    from uploader.inputs import Source

    plan = plan_mapping(tuple(df.columns), options, NAME)
    try:
        schema = to_arrow_schema(df.schema)
    except Exception:  # a Spark type Arrow does not have: the tasks will say which row
        return plan
    check_types(plan, Source(NAME, "table", tuple(df.columns), schema=schema))
    return plan


def _refuse_unsupported(options: Any) -> None:
    """Options the local engine has and this one does not do yet: refused, not ignored."""
    missing = [
        name
        for name, asked in (
            ("duplicates='quantity'", options.duplicates == "quantity"),
            ("catalog=", options.catalog is not None),
        )
        if asked
    ]
    if missing:
        raise ConfigError(
            f"the Spark engine does not do {' or '.join(missing)} yet; use uploader.upload "
            "(the local engine) for that input"
        )


def _derive(df: Any, plan: Any, options: Any) -> Any:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    with_file = df.withColumn(tasks.FILE_COLUMN, F.input_file_name())
    derived = with_file.mapInArrow(
        partial(tasks.derive_partition, plan=plan, options=options), tasks.ddl(tasks.DERIVED)
    )
    return derived.persist(StorageLevel.DISK_ONLY)


def _delivered(spark: Any, state: StateDir) -> Any:
    """Keys the state directory records as delivered or refused, as a DataFrame (lkey)."""
    keys = np.concatenate([state.keys(".keys"), state.keys(".refused")])
    if not len(keys):
        return None
    table = pa.table({"lkey": pa.array(keys.tolist(), pa.binary())})
    return spark.createDataFrame(table.to_pandas())


def _warm_up(
    todo: Any, state: StateDir, job: str, sending: dict[str, Any]
) -> tuple[set[bytes], Counter[str]]:
    """The first event of each name, sent alone by the driver before the tasks start: the
    API creates the event's schema slowly, and a wrong key or address stops the job here."""
    import asyncio

    from pyspark.sql import functions as F

    from uploader.batches import Batch, encode_body
    from uploader.events import KEY_DTYPE, Events
    from uploader.send import RetryPolicy, Sender

    firsts = todo.groupBy("code").agg(F.first("lkey").alias("lkey"), F.first("item").alias("item"))
    rows = firsts.collect()
    figures: Counter[str] = Counter()

    def recorder(code: int, key: bytes, suffix: str, figure: str) -> Any:
        async def record(*_: Any) -> None:
            state.write(f"{state.job_dir(job)}/driver-0-{code}{suffix}", key)
            figures[figure] += 1

        return record

    async def send() -> None:
        async with Sender(
            sending["target"],
            sending["credentials"],
            policy=RetryPolicy(max_retry_time=sending["max_retry_time"]),
        ) as sender:
            for row in rows:
                key = bytes(row.lkey)
                events = Events(
                    "<driver>",
                    np.array([row.code], np.int8),
                    pa.array([row.item], pa.binary()),
                    pa.array([""], pa.string()),
                    np.zeros(1, np.int64),
                    np.array([key], dtype=KEY_DTYPE),
                )
                delivered = recorder(row.code, key, ".keys", "events_sent")
                refused = recorder(row.code, key, ".refused", "events_refused")
                await sender.send_batch(Batch(0, events, encode_body(events)), delivered, refused)
                if figures["events_sent"]:
                    figures[f"by_event:{EVENT_NAMES[row.code]}"] = 1
            figures["requests"] += sender.stats.requests
            figures["retries"] += sender.stats.retries
            for code, n in sender.stats.status_counts.items():
                figures[f"status:{code}"] += n

    if rows:
        asyncio.run(send())
    return {bytes(r.lkey) for r in rows}, figures


def _possibly_resent(state: StateDir) -> int:
    """Events of requests a run sent without hearing back and not answered since: this run
    sends them again. Counted once: their records are removed."""
    leftovers = state.files(f"{state.root}/ledger", ".pending")
    if not leftovers:
        return 0
    pending = state.keys(".pending")
    answered = np.concatenate([state.keys(".keys"), state.keys(".refused")])
    for path in leftovers:
        state.delete(path)
    return int((~np.isin(pending, answered)).sum())


def _task_failure(exc: BaseException) -> str:
    text = str(exc)
    marker = "uploader.errors.UploaderError: "
    if marker in text:
        return text.split(marker, 1)[1].splitlines()[0]
    if "OutOfMemoryError" in text:
        return (
            "Spark ran out of memory (java.lang.OutOfMemoryError, see Spark's log above): "
            "give it more, e.g. spark.driver.memory in local mode, spark.executor.memory "
            "on a cluster, or more partitions"
        )
    if isinstance(exc, ConnectionError) or type(exc).__name__ == "Py4JNetworkError":
        return (
            f"Spark stopped answering ({text.splitlines()[0] if text else type(exc).__name__}); "
            "its log above says why (often memory: spark.driver.memory in local mode)"
        )
    # A Java exception: its first line is the call that failed ("An error occurred while
    # calling o79.collectToPython."), the lines after it Spark's reason, innermost last.
    for line in text.splitlines()[1:]:
        if found := JAVA_REASON.match(line.strip()):
            return f"a task failed: {found[1][:MESSAGE_CHARS]}"
    return f"a task failed: {text.splitlines()[0] if text else type(exc).__name__}"
