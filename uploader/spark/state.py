"""The state of a Spark upload: a directory every executor can reach, local or in object
storage (`s3://…`), holding what the API acknowledged as it happens.

    STATE/ledger/JOB/P-A-S.keys      keys of the events request S of attempt A of
                                     partition P delivered (10 bytes each)
    STATE/ledger/JOB/P-A-S.pending   the same, written before the request goes; removed
                                     once it is answered (left behind: maybe sent twice)
    STATE/ledger/JOB/P-A-S.refused   keys of events the API refused for good
    STATE/lease.json                 who runs on this directory (object storage only)

A key is the first 10 bytes of the SHA-256 of the event's id. A rerun (or a retried task)
reads the keys and sends none of them again. Files are written whole: to a temporary
name then moved on a local disk, in one PUT on object storage.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from uploader.batches import Batch
from uploader.errors import CheckpointError
from uploader.events import KEY_DTYPE, Events
from uploader.lease import claim, describe_holder, holder_of, holder_record, release, try_lock

# A lease on object storage is renewed this often, and is taken as abandoned when it was
# not renewed for LEASE_EXPIRY_S (a killed driver cannot release it).
LEASE_RENEW_S = 30.0
LEASE_EXPIRY_S = 120.0


class StateDir:
    """The state directory, through pyarrow's filesystems (local or object storage)."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        try:
            if "://" in uri:
                self.fs, self.root = pafs.FileSystem.from_uri(uri)
            else:
                self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(uri)
            self.fs.create_dir(f"{self.root}/ledger", recursive=True)
        except (pa.ArrowException, OSError) as exc:
            raise CheckpointError(
                f"state directory {uri}: cannot use it ({exc}); give --state DIR that every "
                "executor can reach and write (a shared folder or s3://bucket/prefix)",
                kind="unwritable",
            ) from exc
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def job_dir(self, job: str) -> str:
        return f"{self.root}/ledger/{job}"

    def write(self, path: str, data: bytes) -> None:
        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            temporary = f"{path}.{uuid.uuid4().hex}.tmp"
            with self.fs.open_output_stream(temporary) as out:
                out.write(data)
            self.fs.move(temporary, path)
        else:
            with self.fs.open_output_stream(path) as out:
                out.write(data)

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(path)

    def files(self, under: str, suffix: str, prefix: str = "") -> list[str]:
        selector = pafs.FileSelector(under, recursive=True, allow_not_found=True)
        names = []
        for info in self.fs.get_file_info(selector):
            base = info.path.rsplit("/", 1)[-1]
            if info.is_file and base.endswith(suffix) and base.startswith(prefix):
                names.append(info.path)
        return sorted(names)

    def read(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as src:
            return bytes(src.read())

    def keys(self, suffix: str, under: str | None = None, prefix: str = "") -> np.ndarray:
        """Every key of the files with this suffix (KEY_DTYPE)."""
        blobs = [self.read(p) for p in self.files(under or f"{self.root}/ledger", suffix, prefix)]
        return np.frombuffer(b"".join(blobs), dtype=KEY_DTYPE)


class DirLedger:
    """The run loop's ledger (uploader.ledger.Ledger) for one attempt of one partition:
    each request's keys written as it goes and once it is answered."""

    def __init__(self, state: StateDir, job: str, partition: int, attempt: int) -> None:
        self.state = state
        self.base = f"{state.job_dir(job)}/{partition}-{attempt}"
        self.seq = 0
        self.parts: dict[int, int] = {}

    def sending(self, batch: Batch) -> int:
        self.seq += 1
        self.state.write(f"{self.base}-{self.seq}.pending", batch.events.keys.tobytes())
        return self.seq

    def delivered(self, batch: Batch) -> None:
        self._write_part(batch.events, ".keys")

    def refused(self, events: Events, reason: str) -> None:
        self._write_part(events, ".refused")

    def answered(self, token: int, batch: Batch) -> None:
        self.state.delete(f"{self.base}-{token}.pending")

    def _write_part(self, events: Events, suffix: str) -> None:
        # A request split by a 413 or a bisected 400 is answered in parts.
        part = self.parts.get(self.seq, 0) + 1
        self.parts[self.seq] = part
        self.state.write(f"{self.base}-{self.seq}.{part}{suffix}", events.keys.tobytes())

    def settled(self, file: str, rows: np.ndarray) -> None:
        pass

    def read(self, file: str, rows: int, queued: int, rejected: int) -> None:
        pass

    def read_all(self, file: str) -> None:
        pass

    def unfinished(self) -> bool:
        return False


class DirLease:
    """One Spark upload at a time per state directory. On a local or shared disk, an
    exclusive lock held by the driver (released however it ends); on object storage, a
    lease file renewed by the driver and taken as abandoned past LEASE_EXPIRY_S."""

    def __init__(self, state: StateDir) -> None:
        self.state = state
        self._fd: int | None = None
        self._path = f"{state.root}/lease.json"
        self._stamp = ""
        self._renewing = threading.Event()

    def __enter__(self) -> DirLease:
        if self.state.local:  # the lock of a local run (lease.py)
            fd = os.open(f"{self.state.root}/lease.lock", os.O_RDWR | os.O_CREAT, 0o600)
            if not try_lock(fd):
                holder = holder_of(fd)
                os.close(fd)
                raise self._busy(holder)
            claim(fd)
            self._fd = fd
            return self
        try:
            held = json.loads(self.state.read(self._path))
        except (FileNotFoundError, OSError, ValueError):
            held = None
        if held and time.time() - float(held.get("renewed", 0)) < LEASE_EXPIRY_S:
            raise self._busy(describe_holder(held))
        record = {**holder_record(), "renewed": time.time(), "stamp": uuid.uuid4().hex}
        self._stamp = str(record["stamp"])
        self.state.write(self._path, json.dumps(record).encode())
        self._renewing = threading.Event()
        threading.Thread(target=self._renew_until_released, name="uploader-lease",
                         daemon=True).start()  # fmt: skip
        return self

    def _renew_until_released(self) -> None:
        while not self._renewing.wait(LEASE_RENEW_S):
            with contextlib.suppress(Exception):  # a missed renewal is retried next time
                self.renew()

    def renew(self) -> None:
        if self._fd is None and self._stamp:
            held = json.loads(self.state.read(self._path))
            if held.get("stamp") == self._stamp:
                held["renewed"] = time.time()
                self.state.write(self._path, json.dumps(held).encode())

    def _busy(self, holder: str) -> CheckpointError:
        return CheckpointError(
            f"state directory {self.state.uri} is in use by another run: {holder}; nothing was "
            "sent. Two runs on one state would send events twice: let that run end",
            kind="busy",
        )

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            release(self._fd)
            self._fd = None
        elif self._stamp:
            self._renewing.set()
            self.state.delete(self._path)


def split_keys(blob: bytes) -> Iterator[bytes]:
    for start in range(0, len(blob), 10):
        yield blob[start : start + 10]
