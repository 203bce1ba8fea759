"""The Spark engine, in local mode with task retries (local[2,3]), against the sandbox.

The same events with the same ids as the local tool, exact duplicates collapsed across
partitions, a rerun that sends nothing, refusals that stop the job as a local upload would.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from uploader.cli import main
from uploader.errors import InputError
from uploader.sandbox import Sandbox

pyspark = pytest.importorskip("pyspark")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CSV = ROOT / "sample_data" / "interactions.csv"
SAMPLE_PARQUET = ROOT / "sample_data" / "interactions.parquet"


@pytest.fixture(scope="module")
def s3_env(s3_server: str) -> Any:
    """moto's S3, known to the executors too: they inherit the environment the session
    starts with, so it is set before the session (and a bucket made)."""
    import pyarrow.fs as pafs

    values = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server,
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    bucket = f"spark-state-{os.getpid()}"
    pafs.S3FileSystem(endpoint_override=s3_server, allow_bucket_creation=True).create_dir(bucket)
    yield bucket
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def spark(s3_env: str) -> Any:
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2,3]")  # 2 cores, a failed task tried up to 3 times
        .appName("uploader-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def stored_ids(sb: Sandbox) -> list[str]:
    ids: list[str] = []
    after = 0
    while page := sb.events(limit=1000, after=after):
        ids.extend(e["item"]["eventId"] for e in page)
        after = page[-1]["id"]
    return ids


def local_ids(tmp_path: Path, *inputs: Path, flags: tuple[str, ...] = ()) -> list[str]:
    """The ids the local tool sends for these inputs (from its dry run's bodies)."""
    out = tmp_path / f"dry-{len(list(tmp_path.iterdir()))}"
    main(["upload", *map(str, inputs), "--dry-run", "--out", str(out), "-q", *flags])
    ids = []
    for line in (out / "requests.jsonl").read_bytes().splitlines():
        ids += [item["eventId"] for g in orjson.loads(line)["track"] for item in g["payload"]]
    return ids


@pytest.mark.parametrize("sample", [SAMPLE_CSV, SAMPLE_PARQUET], ids=["csv", "parquet"])
def test_the_same_events_with_the_same_ids_as_the_local_tool(spark, sample, tmp_path):
    import uploader.spark

    if sample.suffix == ".csv":
        df = spark.read.csv(str(sample), header=True)  # as text, as the local tool reads
    else:
        df = spark.read.parquet(str(sample))
    with Sandbox() as sb:
        result = uploader.spark.upload(df.repartition(3), sandbox=sb, state=str(tmp_path / "state"))
        ids = stored_ids(sb)
    assert result.status == "completed", result.message
    assert sorted(ids) == sorted(local_ids(tmp_path, sample))
    assert result.events_sent == len(ids) == 2000
    assert result.by_event["delivered"].sum() == 2000
    # After a shuffle Spark no longer knows the rows' files: one input, the DataFrame.
    assert [(f.name, f.rows) for f in result.files] == [("<Spark DataFrame>", 2000)]


def test_exact_duplicates_collapse_across_partitions_and_a_rerun_sends_nothing(spark, tmp_path):
    import uploader.spark

    table = pacsv.read_csv(SAMPLE_CSV)
    doubled = tmp_path / "doubled.parquet"
    import pyarrow as pa

    pq.write_table(pa.concat_tables([table, table.slice(0, 500)]), doubled)
    df = spark.read.parquet(str(doubled)).repartition(4)  # the copies land in other partitions
    local = local_ids(tmp_path, doubled, flags=("--duplicates", "collapse"))
    with Sandbox() as sb:
        # Some of the repeated rows are orders: with no choice made, nothing is sent.
        with pytest.raises(InputError, match=r"^55 'Product ordered' rows repeat.*collapse sends"):
            uploader.spark.upload(df, sandbox=sb, state=str(tmp_path / "state"))
        assert sb.stats()["requests"] == 0
        seen = uploader.spark.validate(df)
        assert seen.choice_needed and seen.repeats_by_event["Product ordered"] == 55
        state = str(tmp_path / "state")
        first = uploader.spark.upload(df, sandbox=sb, state=state, duplicates="collapse")
        again = uploader.spark.upload(df, sandbox=sb, state=state, duplicates="collapse")
        stats = sb.stats()
        ids = stored_ids(sb)
    assert first.duplicates_collapsed == 500 and first.events_sent == 2000
    assert sorted(ids) == sorted(local)
    assert again.events_sent == 0 and again.events_skipped_already_sent == 2000
    assert (stats["events"], stats["duplicate_events"]) == (2000, 0)


def test_keep_duplicates_numbers_occurrences_as_the_local_tool(spark, tmp_path):
    import uploader.spark

    copies = tmp_path / "copies.csv"
    lines = SAMPLE_CSV.read_text().splitlines()
    copies.write_text("\n".join([lines[0], *lines[1:6], *lines[1:4], *lines[1:2]]) + "\n")
    df = spark.read.csv(str(copies), header=True).repartition(3)
    with Sandbox() as sb:
        result = uploader.spark.upload(
            df, sandbox=sb, state=str(tmp_path / "state"), keep_duplicates=True
        )
        ids = stored_ids(sb)
    assert result.events_sent == 9
    assert sorted(ids) == sorted(local_ids(tmp_path, copies, flags=("--keep-duplicates",)))


def test_bad_rows_are_rejects_written_by_spark(spark, tmp_path):
    import uploader.spark

    bad = ROOT / "sample_data" / "bad_rows.csv"
    df = spark.read.csv(str(bad), header=True)
    result = uploader.spark.validate(
        df, mapping={"eventId": "event_id"}, rejects=str(tmp_path / "rejects")
    )
    assert result.events_rejected > 0
    written = [
        line
        for part in sorted((tmp_path / "rejects").glob("part-*.csv"))
        for line in part.read_text().splitlines()[1:]
    ]
    assert len(written) == result.rejects_seen
    # Read straight from its file: the summary says "Read N rows from 1 file" and names it.
    assert [(f.name, f.rows) for f in result.files] == [(f"file://{bad}", result.rows_read)]
    header = next((tmp_path / "rejects").glob("part-*.csv")).read_text().splitlines()[0]
    assert header.startswith("file,row,field,reason,")


def test_a_wrong_key_stops_the_job_with_the_local_tools_message(spark, tmp_path):
    import uploader.spark

    df = spark.read.csv(str(SAMPLE_CSV), header=True)
    with Sandbox() as sb:
        result = uploader.spark.upload(
            df,
            org=sb.org,
            project=sb.project,
            source_id=sb.source,
            base_url=sb.base_url,
            api_key="sandbox.not-the-secret",
            state=str(tmp_path / "state"),
        )
        requests = sb.stats()["requests"]
    assert result.status == "aborted"
    assert result.message is not None and result.message.startswith(
        "the API refused the credentials (401"
    )
    assert "not-the-secret" not in result.message
    assert requests == 1  # the driver's first request, before any task


def test_speculative_execution_is_refused_saying_why(tmp_path):
    # spark.speculation is fixed when the context starts: a command line of its own.
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_SUBMIT_ARGS": "--conf spark.speculation=true pyspark-shell",
    }
    done = subprocess.run(
        [sys.executable, "-m", "uploader", "upload", str(SAMPLE_CSV), "--engine", "spark",
         "--spark-master", "local[2]", "--sandbox", "--state", str(tmp_path / "state")],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "uploader: error: spark.speculation is on: Spark would run a partition twice" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr


def events_csv(path: Path, rows: int) -> Path:
    lines = ["ts,event,sku,user_id"]
    lines += [
        f"2024-05-02T14:{i // 3600 % 60:02}:{i % 60:02}Z,view,S{i},u{i % 97}" for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def python_workers(parent: int) -> list[int]:
    """Python processes below `parent` that run a task (pyspark's daemon forks them)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                command = fh.read()
        except OSError:
            continue
        if b"pyspark" in command or b"python" in command:
            found.append((int(entry), int(fields[1])))
    below = {parent}
    changed = True
    while changed:
        changed = False
        for pid, ppid in found:
            if ppid in below and pid not in below:
                below.add(pid)
                changed = True
    daemons = {pid for pid, ppid in found if pid in below and ppid not in below - {parent}}
    return sorted(pid for pid, ppid in found if ppid in below and pid not in daemons | {parent})


def test_a_killed_worker_is_retried_and_every_event_arrives_once_within_the_in_flight_bound(
    spark, tmp_path
):
    import uploader.spark

    source = events_csv(tmp_path / "many.csv", 6000)
    df = spark.read.csv(str(source), header=True).repartition(2)
    with Sandbox(latency_ms=30) as sb:
        box: dict[str, Any] = {}

        def run() -> None:
            box["result"] = uploader.spark.upload(
                df, sandbox=sb, state=str(tmp_path / "state"), concurrency=2, batch_size=50
            )

        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 120
        killed = None
        while time.monotonic() < deadline and killed is None and worker.is_alive():
            if sb.stats()["events"] >= 300:  # sending has started in the tasks
                candidates = python_workers(os.getpid())
                if candidates:
                    killed = candidates[-1]
                    os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        worker.join(timeout=300)
        stats = sb.stats()
    result = box["result"]
    assert killed is not None, "no task was running to kill"
    assert result.status == "completed", result.message
    assert stats["unique_event_ids"] == 6000  # every event arrived
    # Only what the killed attempt had in flight can arrive twice: 2 requests of 50.
    assert stats["duplicate_events"] <= 2 * 50


def test_a_killed_driver_then_a_rerun_delivers_every_event(tmp_path):
    source = events_csv(tmp_path / "many.csv", 6000)
    state = tmp_path / "state"
    with Sandbox(latency_ms=30) as sb:
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "INTEMPT_API_KEY": sb.api_key}
        argv = [
            sys.executable, "-m", "uploader", "upload", str(source), "--engine", "spark",
            "--spark-master", "local[2]", "--state", str(state), "--base-url", sb.base_url,
            "--org", sb.org, "--project", sb.project, "--source", sb.source,
            "--concurrency", "2", "--batch-size", "50",
        ]  # fmt: skip
        first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and sb.stats()["events"] < 1000:
            assert first.poll() is None, "the first run ended before it could be killed"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)  # the driver, its JVM and its workers
        first.wait()
        sent_before = sb.stats()["events"]
        # The rerun at the default (adaptive) requests in flight, as a user would rerun it.
        rerun = [a for a in argv if a not in ("--concurrency", "2")]
        done = subprocess.run(rerun, env=env, capture_output=True, text=True, timeout=300)
        stats = sb.stats()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Requests in flight: adaptive, per task" in done.stdout
    requests = re.search(r"Delivered: [\d,]+ events in ([\d,]+) requests", done.stdout)
    assert requests and int(requests.group(1).replace(",", "")) > 0
    assert 1000 <= sent_before < 6000
    assert stats["unique_event_ids"] == 6000
    # What the killed job had in flight: 2 tasks x 2 requests x 50 events, at most.
    assert stats["duplicate_events"] <= 2 * 2 * 50
    # Every duplicate was in flight when the driver died, and the rerun says how many.
    resent = re.search(r"Possibly sent twice \(in flight when an earlier run stopped\): (\d+)",
                       done.stdout)  # fmt: skip
    assert stats["duplicate_events"] <= (int(resent.group(1)) if resent else 0)


def test_the_rate_is_a_ceiling_for_the_whole_job(spark, tmp_path):
    import uploader.spark

    source = events_csv(tmp_path / "rated.csv", 3000)
    df = spark.read.csv(str(source), header=True).repartition(2)
    # The sandbox answers 429 past 20 requests a second: the job's tasks together stay under.
    with Sandbox(rate_limit=20.0) as sb:
        result = uploader.spark.upload(
            df, sandbox=sb, state=str(tmp_path / "state"), rate=15.0, batch_size=50
        )
        stats = sb.stats()
    assert result.status == "completed", result.message
    assert "429" not in stats["status_counts"]
    assert stats["unique_event_ids"] == 3000


def test_a_429_to_one_task_slows_the_others_down(spark, tmp_path):
    import uploader.spark

    source = events_csv(tmp_path / "pushed-back.csv", 4000)
    df = spark.read.csv(str(source), header=True).repartition(2)
    # No rate given: the tasks find the API's limit by its 429s, and tell each other.
    with Sandbox(rate_limit=20.0) as sb:
        result = uploader.spark.upload(df, sandbox=sb, state=str(tmp_path / "state"), batch_size=50)
        stats = sb.stats()
    assert result.status == "completed", result.message
    assert stats["status_counts"].get("429", 0) > 0 and stats["unique_event_ids"] == 4000
    assert list((tmp_path / "state" / "throttle").glob("*/*.mark"))
    assert result.concurrency["slowed_by_other_tasks"] > 0


def test_the_state_can_live_in_object_storage(spark, s3_env, tmp_path):
    import uploader.spark

    df = spark.read.csv(str(SAMPLE_CSV), header=True).repartition(2)
    state = f"s3://{s3_env}/uploads/state"
    with Sandbox() as sb:
        first = uploader.spark.upload(df, sandbox=sb, state=state)
        again = uploader.spark.upload(df, sandbox=sb, state=state)
        stats = sb.stats()
    assert first.events_sent == 2000 and again.events_sent == 0
    assert (stats["events"], stats["duplicate_events"]) == (2000, 0)


def test_a_column_that_cannot_fill_its_field_is_refused_before_the_job(spark):
    import uploader.spark

    df = spark.createDataFrame(
        [("2024-05-02T14:38:24Z", "view", ["S1"], "u1")],
        "ts string, event string, sku array<string>, user_id string",
    )
    with pytest.raises(InputError, match=r"<Spark DataFrame>: .*'sku'"):
        uploader.spark.validate(df)


def test_an_input_gone_before_the_job_stops_it_in_our_words_having_sent_nothing(spark, tmp_path):
    import uploader.spark
    from uploader.errors import UploaderError

    path = tmp_path / "gone.parquet"
    pq.write_table(pacsv.read_csv(SAMPLE_CSV), path)
    df = spark.read.parquet(str(path))
    path.unlink()  # the tasks find no file: every try of the first task fails
    with Sandbox() as sb:
        with pytest.raises(UploaderError, match=r"^a task failed: .*gone\.parquet"):
            uploader.spark.upload(df, sandbox=sb, state=str(tmp_path / "state"))
        assert sb.stats()["requests"] == 0


def test_spark_running_out_of_memory_is_named_with_what_to_do():
    from uploader.spark.job import _task_failure

    exc = RuntimeError(
        "An error occurred while calling o96.collectToPython.\n"
        ": org.apache.spark.SparkException: Job aborted due to stage failure: "
        "java.lang.OutOfMemoryError: Java heap space\n\tat java.base/java.nio.HeapByteBuffer"
    )
    message = _task_failure(exc)
    assert message.startswith("Spark ran out of memory")
    assert "spark.driver.memory" in message and "\n" not in message
    gone = _task_failure(ConnectionRefusedError(111, "Connection refused"))
    assert gone.startswith("Spark stopped answering ([Errno 111] Connection refused)")


def test_local_mode_gets_a_larger_driver_heap_unless_the_user_chose_one(monkeypatch):
    from uploader.spark import session

    monkeypatch.delenv("SPARK_DRIVER_MEMORY", raising=False)
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", "--master local[2] pyspark-shell")
    assert not session._driver_memory_given()
    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", "--driver-memory 8g pyspark-shell")
    assert session._driver_memory_given()
    monkeypatch.delenv("PYSPARK_SUBMIT_ARGS")
    monkeypatch.setenv("SPARK_DRIVER_MEMORY", "6g")
    assert session._driver_memory_given()


def test_rejects_that_cannot_be_written_abort_a_sent_job_and_a_rerun_ends_it(spark, tmp_path):
    import uploader.spark

    df = spark.read.csv(str(ROOT / "sample_data" / "bad_rows.csv"), header=True)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    options = {"mapping": {"eventId": "event_id"}, "state": str(tmp_path / "state")}
    with Sandbox() as sb:
        first = uploader.spark.upload(df, sandbox=sb, rejects=str(blocker / "rejects"), **options)
        sent = sb.stats()["events"]
        again = uploader.spark.upload(df, sandbox=sb, rejects=str(tmp_path / "rejects"), **options)
        stats = sb.stats()
    assert first.status == "aborted"
    assert first.message is not None and first.message.startswith("writing the rejects: ")
    assert first.events_sent == sent > 0  # sent before the rejects were written
    assert again.status == "completed" and again.events_sent == 0
    assert again.rejects_seen == again.events_rejected > 0
    assert stats["events"] == sent
