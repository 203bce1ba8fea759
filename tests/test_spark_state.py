"""The Spark engine's state directory lease (spark/state.py): one job at a time per folder,
on a disk (the lock of lease.py) and on object storage (a renewed lease file, moto's S3)."""

from __future__ import annotations

import os
import re
import socket

import pytest

from uploader.errors import CheckpointError
from uploader.spark.state import DirLease, StateDir

HOLDER = rf"pid {os.getpid()} on {re.escape(socket.gethostname())}, started \d{{4}}-\d\d-\d\d "


def second_lease_refused(uri: str) -> None:
    with DirLease(StateDir(uri)):
        with pytest.raises(CheckpointError) as refused:
            DirLease(StateDir(uri)).__enter__()
        assert refused.value.kind == "busy"
        assert re.match(
            rf"state directory {re.escape(uri)} is in use by another run: {HOLDER}.*; nothing "
            "was sent. Two runs on one state would send events twice: let that run end$",
            str(refused.value),
        )
    with DirLease(StateDir(uri)):  # released with the first
        pass


def test_a_second_job_on_a_local_state_folder_is_refused_naming_the_first(tmp_path):
    second_lease_refused(str(tmp_path / "state"))


def test_a_second_job_on_a_state_folder_in_object_storage_is_refused(s3_server, monkeypatch):
    import pyarrow.fs as pafs

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server,
    }.items():
        monkeypatch.setenv(key, value)
    bucket = f"lease-{os.getpid()}"
    pafs.S3FileSystem(endpoint_override=s3_server, allow_bucket_creation=True).create_dir(bucket)
    second_lease_refused(f"s3://{bucket}/state")
