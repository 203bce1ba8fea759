"""The core's two entries from a RunConfig: what they write besides the API (the report,
the rejects, the dry run's bodies), what they keep in the result, and that a run that fails
midway leaves no half file behind."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from uploader import core
from uploader.checkpoint import Checkpoint
from uploader.config import build_config
from uploader.errors import InputError
from uploader.progress import Progress, SandboxStarted
from uploader.results import UploadResult
from uploader.sandbox import Sandbox

HEADER = "ts,event,sku,user_id\n"
ROWS = [
    "2024-05-02T14:38:24Z,view,S1,u1",
    "2024-05-02T14:38:25Z,cart,S2,u2",
    "2024-05-02T14:38:26Z,view,,u3",  # no productId: rejected
    "2024-05-02T14:38:27Z,purchase,S4,u4",
    "2024-05-02T14:38:28Z,view,S5,",  # no user: rejected
    "2024-05-02T14:38:29Z,view,S6,u6",
]
TARGET_ENV = {
    "INTEMPT_ORG": "acme",
    "INTEMPT_PROJECT": "shop",
    "INTEMPT_SOURCE_ID": "7301234567890123456",
    "INTEMPT_API_KEY": "pk_test.s3cr3t",
}


@pytest.fixture
def export(write_csv) -> Path:
    return write_csv(HEADER + "\n".join(ROWS) + "\n", "export.csv")


@pytest.fixture
def not_utf8(tmp_path) -> Path:
    """A CSV whose last row is Latin-1, two megabytes in: reading it fails after its
    header is found and after the first chunks were read."""
    path = tmp_path / "latin1.csv"
    good = b"".join(b"2024-05-02T14:38:24Z,view,S%d,u1\n" % i for i in range(60_000))
    path.write_bytes(HEADER.encode() + good + b"2024-05-02T14:38:24Z,view,S1,caf\xe9\n")
    return path


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def upload(config: Any, observer: Any = None, **kwargs: Any) -> UploadResult:
    return asyncio.run(core.upload_async(config, observer, **kwargs))


# --- validate ------------------------------------------------------------------------------


def test_validate_writes_the_report_and_every_rejected_row(export, tmp_path):
    out = tmp_path / "out"
    config = build_config(
        export,
        command="validate",
        rejects=out / "rejects.csv",
        report=out / "report.json",
        keep_rejects=1,
    )
    result = core.validate(config)
    assert (result.rows_read, result.events_valid, result.events_rejected) == (6, 4, 2)
    assert json.loads((out / "report.json").read_text()) == result.to_json()
    with open(out / "rejects.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows == [
        ["file", "row", "field", "reason", "ts", "event", "sku", "user_id"],
        [str(export), "3", "data.productId", "productId is blank (column 'sku')",
         "2024-05-02T14:38:26Z", "view", "", "u3"],
        [str(export), "5", "identity", "no userId, profileId or accountId: 'user_id' blank",
         "2024-05-02T14:38:28Z", "view", "S5", ""],
    ]  # fmt: skip
    assert (result.rejects_path, result.rejects_written) == (str(out / "rejects.csv"), 2)
    assert [r.row for r in result.kept_rejects] == [3]  # keep_rejects=1
    assert result.rejects_seen == 2 and result.rejects_truncated
    assert files_in(out) == ["rejects.csv", "report.json"]


def test_validate_keeps_nothing_it_was_not_asked_to(export):
    result = core.validate(build_config(export, command="validate"))
    assert result.rejects_path is None and result.bodies_path is None
    assert result.kept_rejects == () and result.bodies == ()
    assert result.rejects_seen == 2


def test_a_dry_run_writes_each_request_body_in_send_order(export, tmp_path):
    bodies = tmp_path / "dry" / "requests.jsonl"
    config = build_config(
        export, command="validate", bodies=str(bodies), batch_size=2, keep_bodies=10
    )
    result = core.validate(config)
    lines = bodies.read_bytes().splitlines()
    assert result.requests == len(lines) == 2
    assert result.bodies == tuple(lines)
    assert result.bodies_path == str(bodies)
    assert result.request_bytes == sum(len(line) for line in lines)
    skus = [
        item["data"]["productId"]
        for line in lines
        for group in orjson.loads(line)["track"]
        for item in group["payload"]
    ]
    assert skus == ["S1", "S2", "S4", "S6"]


def test_a_validation_that_fails_midway_leaves_no_file(export, not_utf8, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "rejects.csv").write_text("an earlier run's rejects\n")
    config = build_config(
        [export, not_utf8],
        command="validate",
        rejects=out / "rejects.csv",
        report=out / "report.json",
        bodies=str(out / "requests.jsonl"),
    )
    with pytest.raises(InputError, match=f"^{not_utf8}: not valid utf-8 text at byte offset"):
        core.validate(config)
    assert files_in(out) == ["rejects.csv"]
    assert (out / "rejects.csv").read_text() == "an earlier run's rejects\n"


def test_an_observer_that_fails_stops_the_validation_and_leaves_no_file(export, tmp_path):
    def observer(event: object) -> None:
        raise RuntimeError("the display broke")

    config = build_config(export, command="validate", rejects=tmp_path / "rejects.csv")
    with pytest.raises(RuntimeError, match="the display broke"):
        core.validate(config, observer)
    assert files_in(tmp_path) == ["export.csv"]


# --- upload --------------------------------------------------------------------------------


def test_an_upload_to_a_sandbox_started_for_it_reports_what_the_sandbox_stored(export, tmp_path):
    seen: list[Any] = []
    config = build_config(
        export, command="upload", sandbox=True, state=tmp_path / "state.db", batch_size=2
    )
    result = upload(config, seen.append)
    assert result.status == "completed"
    assert result.events_sent == 4
    assert result.sandbox_stats is not None
    stats = result.sandbox_stats
    assert (stats["events"], stats["unique_event_ids"], stats["key_in_query"]) == (4, 4, 0)
    assert stats["requests"] == result.requests
    assert isinstance(seen[0], SandboxStarted)
    assert seen[0].base_url.startswith("http://127.0.0.1:")
    progress = [e for e in seen if isinstance(e, Progress)]
    assert progress[-1].events_sent == 4 and progress[-1].rows_read == 6


def test_an_upload_to_a_running_sandbox_writes_its_report_and_rejects(export, tmp_path):
    with Sandbox() as sb:
        config = build_config(
            export,
            command="upload",
            sandbox=sb,
            state=tmp_path / "state.db",
            report=tmp_path / "report.json",
            rejects=tmp_path / "rejects.csv",
        )
        result = upload(config)
        assert result.sandbox_stats == sb.stats()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report == result.to_json()
    assert report["status"] == "completed" and report["events_sent"] == 4
    assert result.rejects_written == 2
    assert len((tmp_path / "rejects.csv").read_text().splitlines()) == 3
    assert not list(tmp_path.glob("*.partial"))


def test_api_refusals_are_counted_and_written_with_the_rejects(export, tmp_path):
    def api(request: httpx.Request) -> httpx.Response:
        if b'"S2"' in request.content:
            return httpx.Response(400, json={"message": "price must be a number"})
        return httpx.Response(201)

    config = build_config(
        export,
        command="upload",
        env=TARGET_ENV,
        state=tmp_path / "state.db",
        rejects=tmp_path / "rejects.csv",
    )
    result = upload(config, transport=httpx.MockTransport(api))
    assert result.status == "completed"
    assert (result.events_sent, result.events_rejected_by_api, result.events_rejected) == (3, 1, 3)
    (cause,) = result.api_rejects_by_cause
    assert (cause.cause, cause.count) == (
        "api: the API refused this event (400): price must be a number",
        1,
    )
    lines = (tmp_path / "rejects.csv").read_text().splitlines()
    assert f"{export},2,api,the API refused this event (400): price must be a number,,,," in lines


def test_a_refused_key_aborts_the_upload_and_the_report_says_so(export, tmp_path):
    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"message": "Unauthorized"})

    config = build_config(
        export,
        command="upload",
        env=TARGET_ENV,
        state=tmp_path / "state.db",
        report=tmp_path / "report.json",
    )
    result = upload(config, transport=httpx.MockTransport(api))
    assert result.status == "aborted"
    assert result.message == (
        "the API refused the credentials (401: Unauthorized): the API key is wrong, or has no "
        "access to org 'acme', project 'shop', source id '7301234567890123456'; check "
        "INTEMPT_API_KEY or --api-key-file, --org, --project and --source"
    )
    assert json.loads((tmp_path / "report.json").read_text())["status"] == "aborted"
    checkpoint = Checkpoint(str(tmp_path / "state.db"))
    try:
        assert [r.status for r in checkpoint.runs()] == ["aborted"]
    finally:
        checkpoint.close()


def test_an_upload_that_fails_midway_leaves_no_file_and_records_the_failure(
    export, not_utf8, tmp_path
):
    out = tmp_path / "out"
    config = build_config(
        [export, not_utf8],
        command="upload",
        sandbox=True,
        state=tmp_path / "state.db",
        rejects=out / "rejects.csv",
        report=out / "report.json",
    )
    with pytest.raises(InputError, match=f"^{not_utf8}: not valid utf-8 text at byte offset"):
        upload(config)
    assert files_in(out) == []
    checkpoint = Checkpoint(str(tmp_path / "state.db"))
    try:
        assert [r.status for r in checkpoint.runs()] == ["failed"]
    finally:
        checkpoint.close()


def test_a_bad_mapping_stops_the_upload_before_the_state_file_is_made(export, tmp_path):
    config = build_config(
        export,
        command="upload",
        sandbox=True,
        state=tmp_path / "state.db",
        mapping=["userId=customer"],
    )
    with pytest.raises(InputError, match=r"--map userId=customer: no column 'customer'"):
        upload(config)
    assert files_in(tmp_path) == ["export.csv"]


def test_an_upload_needs_a_destination(export):
    with pytest.raises(
        ValueError, match=r"^an upload needs a destination \(a target or a sandbox\)$"
    ):
        upload(build_config(export, command="validate"))
