"""What a person reads: the end-of-run texts, the plain progress lines of a cron job, and
`uploader status`."""

from __future__ import annotations

import io

import pytest

from uploader import core
from uploader.checkpoint import FileRecord, RunRecord
from uploader.config import build_config
from uploader.console import UploadDisplay, format_result, format_status, format_upload
from uploader.mapping import plan_mapping
from uploader.options import Options
from uploader.progress import Progress, SandboxStarted, Stopping
from uploader.results import CauseCount, FileFigures, UploadResult
from uploader.validation import RowReject

MIXED = """ts,event,sku,user_id,qty
2024-05-02T14:38:24Z,view,S1,u1,1
2024-05-02T14:38:25Z,cart,S2,17850.0,2
2024-05-02T14:38:26Z,wishlist,S3,u3,1
2024-05-02T14:38:27Z,view,,u4,1
2024-05-02T14:38:28Z,view,,u5,1
2024-05-02T14:38:29Z,dance,S8,u8,1
2024-05-02T14:38:24Z,view,S1,u1,1
"""
VALIDATION = """\
Read 7 rows from 1 file.
CSV: delimiter ',' (found in the header line), encoding utf-8.
Mapping: event from column 'event'; productId <- sku, userId <- user_id, timestamp <- ts, \
data.quantity <- qty.
Timestamps: 7 ISO 8601 text with zone.
Ids written as whole floats, normalised (17850.0 -> 17850): 1.

Valid events: 2
  Added to cart                 1
  Product viewed                1
Exact duplicate rows collapsed into one event: 1 (--duplicates keep|quantity sends them)
Rows left out by --event-map …=ignore: 1
Rejected rows: 3
         2  data.productId: productId is blank (column 'sku')
            e.g. in.csv row 4
         1  name: not one of the four recommendation events (see --event-map)
            e.g. in.csv row 6: event 'dance' is not one of the four recommendation events; \
map it with --event-map 'dance=Product viewed' (or ignore)
Rows accounted for: 7 read = 2 valid + 3 rejected + 1 duplicates collapsed + 1 left out
Requests: 1 (349 bytes of JSON)"""
PLAN = plan_mapping(("ts", "event", "sku", "user_id"), Options(), "a.csv")
BLANK_CAUSE = "data.productId: productId is blank (column 'sku')"
BLANK = RowReject("in/a.csv", 41, "data.productId", "productId is blank (column 'sku')")


@pytest.fixture
def mixed(write_csv):
    return write_csv(MIXED, "in.csv")


def validate(path, **options):
    config = build_config(path, command="validate", event_map=["wishlist=ignore"], **options)
    return core.validate(config)


def delivered(**changes: object) -> UploadResult:
    figures: dict[str, object] = {
        "rows_read": 1_200,
        "events_valid": 1_190,
        "events_rejected": 12,
        "valid_by_event": {"Product viewed": 1_190},
        "files": (FileFigures("in/a.csv", 700, PLAN), FileFigures("in/b.csv", 500, PLAN)),
        "rejects_by_cause": (CauseCount(BLANK_CAUSE, 10, (BLANK,)),),
        "requests": 3,
        "events_sent": 1_180,
        "retries": 4,
        "status_counts": {"201": 3, "503": 4},
        "elapsed_s": 2.345,
        "events_per_s": 503.2,
    }
    return UploadResult(**{**figures, **changes})


# --- end-of-run texts ----------------------------------------------------------------------


def test_a_validation_shows_the_plan_the_counts_and_where_the_rejects_are(mixed):
    text = format_result(validate(mixed))
    assert text == VALIDATION + "\nGive --rejects FILE for the full list of rejected rows."


def test_a_dry_run_names_its_rejects_and_bodies_files(mixed, tmp_path):
    rejects, bodies = tmp_path / "out" / "rejects.csv", str(tmp_path / "out" / "requests.jsonl")
    result = validate(mixed, rejects=rejects, bodies=bodies, batch_size=1)
    assert format_result(result) == (
        VALIDATION.replace("Requests: 1 (349 bytes", "Requests: 2 (360 bytes")
        + f"\nRejected rows written to {rejects} (3 rows)."
        + f"\nRequest bodies: {bodies} (2 lines, in send order)"
    )


def test_an_upload_shows_what_was_delivered_and_no_request_plan():
    result = delivered(
        events_rejected_by_api=2,
        events_skipped_already_sent=8,
        possibly_resent=3,
        skipped_files=(("in/c.csv", "already uploaded (40 events)"),),
        rejects_path="out/rejects.csv",
        rejects_written=12,
    )
    assert format_result(result) == (
        "Read 1,200 rows from 2 files.\n"
        "Mapping (a.csv and alike): event from column 'event'; productId <- sku, "
        "userId <- user_id, timestamp <- ts.\n"
        "\n"
        "Valid events: 1,190\n"
        "  Product viewed            1,190\n"
        "Rejected rows: 10\n"
        "        10  data.productId: productId is blank (column 'sku')\n"
        "            e.g. a.csv row 41\n"
        "Rows accounted for: 1,200 read = 1,190 valid + 10 rejected + 0 duplicates collapsed + "
        "0 left out\n"
        "\n"
        "Delivered: 1,180 events in 3 requests (4 retries) in 2.3 s, 503 events/s\n"
        "  Answers: 201: 3, 503: 4\n"
        "Refused by the API: 2 (in the rejects file)\n"
        "Not sent again, delivered by an earlier run: 8\n"
        "Possibly sent twice (in flight when an earlier run stopped): 3\n"
        "Skipped in/c.csv: already uploaded (40 events) (--force sends it again)\n"
        "Rejected rows written to out/rejects.csv (12 rows)."
    )


def test_an_upload_with_nothing_to_read_says_so():
    result = UploadResult(skipped_files=(("a.csv", "already uploaded (2 events)"),))
    assert format_result(result) == (
        "Nothing to read: every input was uploaded before.\n"
        "\n"
        "Delivered: 0 events in 0 requests (0 retries) in 0.0 s, 0 events/s\n"
        "Skipped a.csv: already uploaded (2 events) (--force sends it again)"
    )


def test_an_upload_to_a_sandbox_says_what_it_stored():
    result = delivered(sandbox_stats={"events": 1_180, "unique_event_ids": 1_179, "requests": 7})
    assert format_result(result).endswith(
        "\nThe sandbox stored 1,180 events (1,179 distinct ids) from 7 requests."
    )


def test_format_upload_leaves_out_what_did_not_happen():
    assert format_upload(delivered(status_counts={})) == (
        "\nDelivered: 1,180 events in 3 requests (4 retries) in 2.3 s, 503 events/s"
    )


# --- progress in a log ---------------------------------------------------------------------


def progress(**changes: int | None) -> Progress:
    figures: dict[str, int | None] = {
        "rows_read": 12_000,
        "bytes_read": 512,
        "bytes_total": 1024,
        "rows_total": None,
        "events_sent": 11_500,
        "events_rejected": 20,
        "requests": 23,
        "retries": 2,
    }
    return Progress(**{**figures, **changes})


def test_without_a_terminal_progress_is_logged_as_plain_lines():
    stream = io.StringIO()
    display = UploadDisplay(quiet=False, stream=stream)
    display(progress(rows_read=10, bytes_read=10, events_sent=0))
    display(SandboxStarted("http://127.0.0.1:1"))
    display(progress())
    display.close()
    lines = stream.getvalue().splitlines()
    assert lines[-1] == (
        "uploader: read 12,000 rows (50% of the input), delivered 11,500 events, "
        "rejected 20, 23 requests, 2 retries"
    )
    assert all(line.startswith("uploader: read ") for line in lines)


def test_without_input_sizes_the_log_line_has_no_share():
    stream = io.StringIO()
    display = UploadDisplay(quiet=False, stream=stream)
    display(progress(bytes_total=None))
    display.close()
    assert stream.getvalue().splitlines()[-1] == (
        "uploader: read 12,000 rows, delivered 11,500 events, rejected 20, 23 requests, 2 retries"
    )


def test_quiet_logs_nothing():
    stream = io.StringIO()
    display = UploadDisplay(quiet=True, stream=stream)
    display(progress())
    display.close()
    assert stream.getvalue() == ""
    assert display.last == progress()  # still kept, for the caller


def test_the_stopping_message_is_said_at_the_first_interrupt():
    stream = io.StringIO()
    display = UploadDisplay(quiet=True, stream=stream, stopping="uploader: stopping…")
    display(Stopping())
    assert stream.getvalue() == "uploader: stopping…\n"


def test_no_stopping_message_no_words():
    stream = io.StringIO()
    display = UploadDisplay(quiet=False, stream=stream)
    display(Stopping())
    display.close()
    assert stream.getvalue() == ""


# --- uploader status -----------------------------------------------------------------------


def test_status_lists_runs_and_files_with_what_remains():
    runs = [
        RunRecord(1, 1_764_547_200.0, 1_764_547_265.5, "completed", "org 'acme'", 0),
        RunRecord(12, 1_764_550_800.0, None, "running", "org 'acme'", 3),
    ]
    files = [
        FileRecord(1, "acme/shop/1", "a.csv", 10, "sha256:a", "complete", 10, 9, 1, 0.0),
        FileRecord(2, "acme/shop/1", "b.csv", 10, "sha256:b", "partial", 1_000, 600, 50, 0.0),
    ]
    assert format_status(runs, files) == (
        "Runs:\n"
        "  #1    2025-12-01 00:00:00 UTC -> 2025-12-01 00:01:05 UTC  completed   org 'acme'\n"
        "  #12   2025-12-01 01:00:00 UTC -> -  running     org 'acme'\n"
        "Files:\n"
        "  complete a.csv -> acme/shop/1: 10 rows read, 9 delivered, 1 rejected\n"
        "  partial  b.csv -> acme/shop/1: 1,000 rows read, 600 delivered, 50 rejected, "
        "about 350 rows not yet delivered"
    )


def test_an_empty_state_file_says_none():
    assert format_status([], []) == "Runs:\n  none\nFiles:\n  none"
