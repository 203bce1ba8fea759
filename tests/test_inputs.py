"""Finding inputs: Hive-partitioned folders, and object storage through a local S3 server."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from uploader import core
from uploader.config import build_config
from uploader.errors import CheckpointError, InputError
from uploader.inputs import FINGERPRINT_SAMPLE, fingerprint, partitions_of, resolve_sources
from uploader.results import UploadResult
from uploader.sandbox import Sandbox

DAYS = ["2026-11-25", "2026-11-26"]


def write_partitioned(root: Path) -> None:
    for n, day in enumerate(DAYS):
        folder = root / "exports" / f"dt={day}" / "region=eu%20west"
        folder.mkdir(parents=True)
        table = pa.table(
            {
                "sku": [f"S{n}-{i}" for i in range(3)],
                "user_id": pa.array([100 + i for i in range(3)], pa.int64()),
            }
        )
        pq.write_table(table, folder / "part-0.parquet")


def items(batches):
    return [i for b in batches for g in orjson.loads(b.body)["track"] for i in g["payload"]]


def test_partition_folders_become_columns_usable_in_the_mapping(tmp_path, run_plan):
    write_partitioned(tmp_path)
    sources = resolve_sources([tmp_path / "exports"])
    assert [s.columns for s in sources] == [("sku", "user_id", "dt", "region")] * 2
    _, batches, rejects = run_plan(
        [tmp_path / "exports"],
        event="Product ordered",
        mapping=["timestamp=dt", "data.region=region"],
    )
    assert rejects == []
    sent = items(batches)
    assert len(sent) == 6
    midnights = {
        int(datetime.fromisoformat(f"{d}T00:00:00+00:00").timestamp() * 1000) for d in DAYS
    }
    assert {i["timestamp"] for i in sent} == midnights
    assert {i["data"]["region"] for i in sent} == {"eu west"}


def test_partition_names_parse_outermost_first():
    assert partitions_of("s3://b/x/dt=2026-11-26/h=07/part.csv") == (
        ("dt", "2026-11-26"),
        ("h", "07"),
    )
    assert partitions_of("plain/folder/file.csv") == ()


def test_fingerprint_follows_content_not_name(tmp_path, write_csv):
    a = write_csv("a\n1\n", "a.csv")
    b = write_csv("a\n1\n", "b.csv")
    c = write_csv("a\n2\n", "c.csv")
    fa, fb, fc = (fingerprint(s) for s in resolve_sources([a, b, c]))
    assert fa == fb != fc


def test_fingerprint_of_a_large_file_reads_its_head_and_tail(write_csv):
    body = "a\n" + "1\n" * (FINGERPRINT_SAMPLE // 2 + 10) + "2\n" * (FINGERPRINT_SAMPLE // 2)
    first = fingerprint(*resolve_sources([write_csv(body, "a.csv")]))
    tail = fingerprint(*resolve_sources([write_csv(body[:-2] + "3\n", "b.csv")]))
    assert first != tail
    assert first.startswith("sha256:")


def test_fingerprint_of_a_table_follows_its_content():
    one = pa.table({"sku": ["S1", "S2"]})
    same = pa.table({"sku": ["S1", "S2"]})
    other = pa.table({"sku": ["S1", "S3"]})
    prints = [fingerprint(s) for s in resolve_sources([one, same, other])]
    assert prints[0] == prints[1] != prints[2]
    assert prints[0].startswith("table:")


@pytest.fixture
def s3(s3_server, monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server,
    }.items():
        monkeypatch.setenv(key, value)
    import pyarrow.fs as pafs

    filesystem = pafs.S3FileSystem(endpoint_override=s3_server, allow_bucket_creation=True)
    bucket = f"exports-{os.getpid()}-{time.monotonic_ns()}"
    filesystem.create_dir(bucket)

    def put(key: str, data: bytes) -> str:
        with filesystem.open_output_stream(f"{bucket}/{key}") as out:
            out.write(data)
        return f"s3://{bucket}/{key}"

    return bucket, put


CSV = b"ts,event,sku,user_id\n2024-05-02T14:38:24Z,view,S1,u1\n2024-05-02T14:38:25Z,cart,S2,u2\n"


def test_s3_folder_with_partitions_is_read(s3, run_plan):
    bucket, put = s3
    put("interactions/dt=2026-11-26/part-0.csv", CSV)
    put("interactions/dt=2026-11-27/part-0.csv", CSV.replace(b"S1", b"S3"))
    put("interactions/notes.md", b"not data")
    sources = resolve_sources([f"s3://{bucket}/interactions/"])
    assert [s.name for s in sources] == [
        f"s3://{bucket}/interactions/dt=2026-11-26/part-0.csv",
        f"s3://{bucket}/interactions/dt=2026-11-27/part-0.csv",
    ]
    _, batches, rejects = run_plan([f"s3://{bucket}/interactions/*/*.csv"],
                                       mapping=["data.day=dt"])  # fmt: skip
    assert rejects == []
    assert (
        sorted(i["data"]["day"] for i in items(batches)) == ["2026-11-26"] * 2 + ["2026-11-27"] * 2
    )


def upload_to(sb: Sandbox, inputs: list[str], state: Path) -> UploadResult:
    config = build_config(inputs, command="upload", sandbox=sb, state=state)
    return asyncio.run(core.upload_async(config))


def test_s3_upload_skips_a_delivered_object_and_refuses_a_changed_one(s3, tmp_path):
    _, put = s3
    uri = put("daily/part-0.csv", CSV)
    state = tmp_path / "state.db"
    with Sandbox() as sb:
        first = upload_to(sb, [uri], state)
        again = upload_to(sb, [uri], state)
        assert sb.stats()["events"] == 2
        put("daily/part-0.csv", CSV + b"2024-05-02T14:38:26Z,view,S9,u9\n")
        with pytest.raises(CheckpointError, match="changed since 2 of its events"):
            upload_to(sb, [uri], state)
    assert first.events_sent == 2
    assert again.skipped_files == ((uri, "already uploaded (2 events)"),)


def test_missing_bucket_or_object_is_an_input_error(s3):
    bucket, _ = s3
    with pytest.raises(InputError, match="no such object or prefix"):
        resolve_sources([f"s3://{bucket}/nothing-here.csv"])
