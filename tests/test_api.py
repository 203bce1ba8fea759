"""The Python API over real files and a real sandbox on 127.0.0.1: results, re-runs,
running event loops, interrupts, errors with the command line's words, and the key."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import uploader
from uploader import results
from uploader.cli import main
from uploader.contract import EVENT_NAMES
from uploader.errors import CheckpointError, ConfigError, InputError
from uploader.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "interactions.csv"
NAMES = {
    "view": "Product viewed",
    "cart": "Added to cart",
    "remove_from_cart": "Removed from cart",
    "purchase": "Product ordered",
}
INTEMPT_ENV = ("INTEMPT_ORG", "INTEMPT_PROJECT", "INTEMPT_SOURCE_ID", "INTEMPT_API_KEY")


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.read_csv(SAMPLE)


@pytest.fixture
def broken(frame: pd.DataFrame) -> pd.DataFrame:
    """Two rows with an event the tool does not know, one without a product."""
    frame.loc[[3, 10], "event_type"] = "wishlist"
    frame.loc[20, "product_id"] = None
    return frame


@pytest.fixture
def sb():
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def quiet(tmp_path: Path) -> dict[str, object]:
    return {"state": str(tmp_path / "state.db"), "progress": False}


def payload_ids(result: uploader.ValidationResult, n: int) -> list[str]:
    return [
        item["eventId"]
        for body in result.sample_payload(n)
        for group in body["track"]
        for item in group["payload"]
    ]


def test_validate_a_frame_lists_rejects_with_their_original_columns(broken):
    result = uploader.validate(broken, progress=False)

    assert (result.rows_read, result.events_valid, result.events_rejected) == (2000, 1997, 3)
    rejects = result.rejects
    assert list(rejects.columns) == ["file", "row", "field", "reason", *broken.columns]
    assert rejects["row"].tolist() == [4, 11, 21]  # 1-based data rows
    assert rejects["field"].tolist() == ["name", "name", "data.productId"]
    assert "'wishlist'" in rejects.loc[0, "reason"]
    assert rejects.loc[1, "event_type"] == "wishlist"
    assert rejects.loc[2, "user_id"] == broken.loc[20, "user_id"]
    assert rejects["file"].str.fullmatch(r"<DataFrame [0-9a-f]{8}>").all()
    assert not result.rejects_truncated


def test_fixing_the_event_map_clears_the_rejects(broken):
    ignored = uploader.validate(broken, event_map={"wishlist": "ignore"}, progress=False)
    mapped = uploader.validate(broken, event_map=["wishlist=Added to cart"], progress=False)

    assert ignored.events_rejected == 1 and ignored.figures["rows_ignored"] == 2
    assert mapped.events_rejected == 1
    base = broken["event_type"].map(NAMES).value_counts()
    assert mapped.by_event.loc["Added to cart", "valid"] == base["Added to cart"] + 2


def test_by_event_counts_each_event_name(frame):
    result = uploader.validate(frame, progress=False)

    expected = frame["event_type"].map(NAMES).value_counts().sort_index()
    assert result.by_event.index.name == "event"
    assert result.by_event["valid"].to_dict() == expected.to_dict()
    assert "delivered" not in result.by_event.columns


def test_a_path_an_arrow_table_and_a_frame_give_the_same_events(frame):
    as_path = uploader.validate(SAMPLE, batch_size=50, progress=False)
    as_table = uploader.validate(pacsv.read_csv(SAMPLE), batch_size=50, progress=False)
    as_frame = uploader.validate(frame, batch_size=50, progress=False)

    ids = payload_ids(as_path, 10)
    assert len(ids) == 500
    assert payload_ids(as_table, 10) == ids == payload_ids(as_frame, 10)
    assert as_path.figures["files"][0]["file"] == str(SAMPLE)
    assert as_table.figures["files"][0]["file"].startswith("<Arrow table ")


def test_sample_payload_gives_the_first_request_bodies(frame):
    result = uploader.validate(frame, batch_size=10, progress=False)

    first, second = result.sample_payload(2)
    assert sum(len(g["payload"]) for g in first["track"]) == 10
    assert {g["name"] for g in first["track"] + second["track"]} <= set(EVENT_NAMES)
    assert result.sample_payload() == [first]
    assert payload_ids(result, 1) != [i["eventId"] for g in second["track"] for i in g["payload"]]
    with pytest.raises(ValueError, match="between 1 and"):
        result.sample_payload(0)


def test_upload_a_frame_then_rerun_it_sends_nothing(frame, sb, quiet):
    first = uploader.upload(frame, sandbox=sb, **quiet)
    again = uploader.upload(frame, sandbox=sb, **quiet)

    assert first.status == "completed" and first.events_sent == 2000
    assert first.by_event["delivered"].to_dict() == first.by_event["valid"].to_dict()
    assert first.requests >= 4 and first.status_counts == {"201": first.requests}
    assert again.status == "completed" and again.events_sent == 0
    assert again.skipped_files[0][1] == "already uploaded (2,000 events)"
    assert "Nothing to read: every input was uploaded before." in str(again)
    stats = sb.stats()
    assert (stats["events"], stats["duplicate_events"]) == (2000, 0)


def test_an_arrow_table_and_a_path_upload_in_one_call(frame, sb, quiet, tmp_path):
    head = tmp_path / "head.csv"
    frame.iloc[:1200].to_csv(head, index=False)
    tail = pa.Table.from_pandas(frame.iloc[1200:], preserve_index=False)

    result = uploader.upload([head, tail], sandbox=sb, **quiet)

    assert result.events_sent == 2000 and result.rows_read == 2000
    assert [f["rows"] for f in result.figures["files"]] == [1200, 800]
    assert sb.stats()["unique_event_ids"] == 2000


def test_a_different_frame_is_a_new_input_but_a_named_frame_is_tracked(frame, sb, quiet):
    uploader.upload(frame.iloc[:1000], sandbox=sb, **quiet)
    other = uploader.upload(frame.iloc[1000:], sandbox=sb, **quiet)
    assert other.events_sent == 1000  # not refused as "changed": it is another frame
    assert sb.stats()["unique_event_ids"] == 2000

    uploader.upload({"interactions": frame.iloc[:500]}, sandbox=sb, **quiet)
    with pytest.raises(CheckpointError, match=r"^<interactions> changed since 500 of its events"):
        uploader.upload({"interactions": frame.iloc[:600]}, sandbox=sb, **quiet)
    restarted = uploader.upload(
        {"interactions": frame.iloc[:600]}, sandbox=sb, restart=True, **quiet
    )
    assert restarted.events_sent == 600


def test_sync_upload_works_inside_a_running_event_loop(frame, sb, quiet):
    async def cell() -> uploader.UploadResult:
        asyncio.get_running_loop()  # as in Jupyter: a loop is running in this thread
        return uploader.upload(frame, sandbox=sb, **quiet)

    result = asyncio.run(cell())

    assert result.status == "completed" and result.events_sent == 2000


def test_the_async_variants_can_be_awaited(frame, sb, quiet):
    async def cell() -> tuple[uploader.ValidationResult, uploader.UploadResult]:
        checked = await uploader.validate_async(frame, progress=False)
        sent = await uploader.upload_async(frame, sandbox=sb, **quiet)
        return checked, sent

    checked, sent = asyncio.run(cell())

    assert checked.events_valid == sent.events_sent == sb.stats()["events"] == 2000


def test_an_interrupt_stops_after_the_requests_in_flight_and_a_rerun_resumes(frame, quiet, capsys):
    options = dict(quiet, batch_size=50, concurrency=2)
    with Sandbox(latency_ms=40) as slow:
        # The interrupt as the first events are stored, from the sandbox's own thread: a
        # thread polling for them could be starved on a busy machine until the run is over.
        store = slow._store()
        record, fired = store.record, threading.Event()

        def record_then_interrupt(*args: Any, **kwargs: Any) -> Any:
            answer = record(*args, **kwargs)
            if not fired.is_set():
                fired.set()
                os.kill(os.getpid(), signal.SIGINT)  # what Jupyter's stop button sends
            return answer

        store.record = record_then_interrupt  # type: ignore[method-assign]
        stopped = uploader.upload(frame, sandbox=slow, **options)
        store.record = record  # type: ignore[method-assign]
        stored = slow.stats()["events"]
        resumed = uploader.upload(frame, sandbox=slow, **options)
        stats = slow.stats()

    assert "stopping after the requests in flight" in capsys.readouterr().err
    assert stopped.status == "interrupted" and 0 < stopped.events_sent < 2000
    assert stored == stopped.events_sent  # the requests in flight finished and were recorded
    assert "run the same call again to resume" in stopped._repr_html_()
    assert resumed.status == "completed"
    assert resumed.events_skipped_already_sent == stopped.events_sent
    assert stopped.events_sent + resumed.events_sent == 2000 and resumed.possibly_resent == 0
    assert (stats["events"], stats["duplicate_events"]) == (2000, 0)


def test_unknown_options_are_named_with_the_known_ones(frame):
    with pytest.raises(ConfigError, match=r"^unknown option evnt_map; known options: .*event_map"):
        uploader.upload(frame, evnt_map={"a": "b"})
    with pytest.raises(ConfigError, match=r"unknown option org \(upload options"):
        uploader.validate(frame, org="acme")
    with pytest.raises(InputError, match="cannot read a int"):
        uploader.validate(42)


def test_a_bad_mapping_raises_the_same_error_before_anything_is_sent(frame, sb, quiet):
    with pytest.raises(InputError) as checked:
        uploader.validate(frame, mapping={"productId": "sku"}, progress=False)
    with pytest.raises(InputError) as sent:
        uploader.upload(frame, mapping={"productId": "sku"}, sandbox=sb, **quiet)

    assert str(sent.value) == str(checked.value)
    assert "--map data.productId=sku: no column 'sku'" in str(sent.value)
    assert sb.stats()["requests"] == 0


def test_missing_credentials_raise_the_command_lines_message(frame, monkeypatch, capsys, quiet):
    for name in INTEMPT_ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as raised:
        uploader.upload(frame, **quiet)

    assert str(raised.value) == (
        "missing org (give --org ORG or INTEMPT_ORG); project (give --project NAME or "
        "INTEMPT_PROJECT); source id (give --source ID or INTEMPT_SOURCE_ID); API key (give "
        "INTEMPT_API_KEY or --api-key-file FILE). Or use --sandbox to rehearse against the "
        "built-in local API"
    )
    assert main(["upload", str(SAMPLE), "--state", str(quiet["state"])]) == 2
    assert f"uploader: error: {raised.value}" in capsys.readouterr().err
    assert not os.path.exists(str(quiet["state"]))


def test_the_intempt_environment_sets_the_target(frame, sb, monkeypatch, quiet):
    monkeypatch.setenv("INTEMPT_ORG", sb.org)
    monkeypatch.setenv("INTEMPT_PROJECT", sb.project)
    monkeypatch.setenv("INTEMPT_SOURCE_ID", sb.source)
    monkeypatch.setenv("INTEMPT_API_KEY", sb.api_key)
    monkeypatch.setenv("INTEMPT_BASE_URL", sb.base_url)

    result = uploader.upload(frame, **quiet)

    assert result.events_sent == sb.stats()["events"] == 2000


def test_the_key_never_shows_in_results_files_or_errors(broken, tmp_path, quiet):
    secret = "TOPsecret-9f8e7d"
    with Sandbox(api_key=f"acme.{secret}") as sandbox:
        target = {
            "org": sandbox.org,
            "project": sandbox.project,
            "source_id": sandbox.source,
            "base_url": sandbox.base_url,
        }
        sent = uploader.upload(
            broken,
            api_key=f"acme.{secret}",
            rejects=tmp_path / "rejects.csv",
            report=tmp_path / "report.json",
            **target,
            **quiet,
        )
        refused = uploader.upload(broken, api_key="acme.wrong-one", force=True, **target, **quiet)

    assert sent.events_sent == 1997 and sent.events_rejected == 3
    assert refused.status == "aborted" and "401" in (refused.message or "")
    for result in (sent, refused):
        shown = [
            repr(result),
            str(result),
            result._repr_html_(),
            orjson.dumps(result.figures).decode(),
            result.rejects.to_csv(),
            result.by_event.to_csv(),
            orjson.dumps(result.sample_payload(1) if result.bodies else []).decode(),
        ]
        assert not [text for text in shown if secret in text or "acme." in text]
    for path in ("rejects.csv", "report.json", "state.db"):
        assert secret.encode() not in (tmp_path / path).read_bytes()
    assert len(pd.read_csv(tmp_path / "rejects.csv")) == 3


def test_rejects_in_memory_are_capped_and_the_file_gets_them_all(broken, tmp_path, monkeypatch):
    monkeypatch.setattr(results, "REJECTS_KEPT", 2)
    path = tmp_path / "rejects.csv"

    result = uploader.validate(broken, rejects=path, progress=False)

    assert len(result.rejects) == 2 and result.rejects_truncated
    assert "holds the first 2 rejected rows" in result._repr_html_()
    assert pd.read_csv(path)["row"].tolist() == [4, 11, 21]
    assert f"Rejected rows written to {path} (3 rows)." in str(result)


def test_sandbox_true_runs_one_for_the_call_and_refuses_a_real_target(frame, quiet):
    result = uploader.upload(frame, sandbox=True, **quiet)
    assert result.sandbox_stats is not None and result.sandbox_stats["events"] == 2000
    assert "The sandbox stored 2,000 events" in str(result)

    with pytest.raises(ConfigError, match="leave out org, api_key"):
        uploader.upload(frame, sandbox=True, org="acme", api_key="a.b", **quiet)
    with pytest.raises(ConfigError, match="this Sandbox is not running"):
        uploader.upload(frame, sandbox=Sandbox(), **quiet)


def test_the_summary_reads_as_html_and_text(broken, sb, quiet):
    result = uploader.upload(broken, sandbox=sb, **quiet)

    page = result._repr_html_()
    assert "<strong>Upload completed</strong>" in page
    assert '<td style="text-align:right">1,997</td>' in page
    assert "Product viewed" in page and "&lt;DataFrame " in page  # names are escaped
    assert "name: not one of the four recommendation events (see --event-map)" in page
    assert str(result).startswith("Read 2,000 rows from 1 file.")
    assert repr(result) == "<UploadResult completed: 1,997 events sent, 3 rejected>"


def test_progress_bars_show_unless_turned_off(frame, sb, tmp_path, capsys):
    uploader.upload(frame, sandbox=sb, state=str(tmp_path / "a.db"))
    shown = capsys.readouterr().err
    uploader.upload(frame, sandbox=sb, state=str(tmp_path / "b.db"), progress=False)
    uploader.validate(frame, progress=False)
    silent = capsys.readouterr().err

    assert "Delivered: 100%" in shown and "2.00k/2.00k" in shown  # against what it expected
    assert "Rejected : 0 rows" in shown
    assert silent == ""
