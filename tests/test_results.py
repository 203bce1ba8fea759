"""The result records: the --report's keys in order, the notebook's DataFrames, the sample
bodies, the reprs and the HTML summary."""

from __future__ import annotations

import orjson
import pandas as pd
import pytest

from uploader.mapping import plan_mapping
from uploader.options import Options
from uploader.results import CauseCount, FileFigures, UploadResult, ValidationResult
from uploader.validation import RowReject

VALIDATION_KEYS = [
    "rows_read",
    "events_valid",
    "events_rejected",
    "duplicates_collapsed",
    "rows_ignored",
    "rows_skipped_done_before",
    "ids_normalised",
    "duplicates",
    "by_event",
    "rejects_by_cause",
    "files",
    "timestamps",
    "timezone",
    "requests",
    "bytes",
    "accounted",
]
UPLOAD_KEYS = [
    *VALIDATION_KEYS,
    "events_sent",
    "delivered_by_event",
    "events_rejected_by_api",
    "events_skipped_already_sent",
    "events_refused_in_earlier_runs",
    "possibly_resent",
    "files_skipped",
    "retries",
    "status_counts",
    "elapsed_s",
    "events_per_s",
    "concurrency",
    "status",
]
PLAN = plan_mapping(("ts", "event", "sku", "user_id", "note"), Options(), "a.csv")
BLANK = RowReject(
    "a.csv",
    4,
    "data.productId",
    "productId is blank (column 'sku')",
    {"ts": "2024-05-02", "event": "view", "sku": "", "user_id": "u4", "note": "x"},
)
BLANK_CAUSE = CauseCount("data.productId: productId is blank (column 'sku')", 2, (BLANK,))
BODIES = tuple(
    orjson.dumps({"track": [{"name": "Product viewed", "payload": [{"eventId": f"e{i}"}]}]})
    for i in range(3)
)


def validation(**changes: object) -> ValidationResult:
    figures: dict[str, object] = {
        "rows_read": 1_234,
        "events_valid": 1_000,
        "events_rejected": 234,
        "valid_by_event": {"Product viewed": 600, "Added to cart": 400},
        "rejects_by_cause": (BLANK_CAUSE,),
        "files": (FileFigures("a.csv", 1_234, PLAN),),
        "timestamps": {"ISO 8601 text with zone": 1_234},
        "requests": 2,
        "request_bytes": 9_000,
    }
    return ValidationResult(**{**figures, **changes})


def upload(**changes: object) -> UploadResult:
    figures: dict[str, object] = {
        "rows_read": 10,
        "events_valid": 9,
        "events_rejected": 2,
        "valid_by_event": {"Product viewed": 9},
        "delivered_by_event": {"Product viewed": 8},
        "events_sent": 8,
        "events_rejected_by_api": 1,
        "api_rejects_by_cause": (CauseCount("api: price must be a number", 1),),
        "rejects_by_cause": (CauseCount("data.productId: productId is blank", 1, (BLANK,)),),
        "status_counts": {"201": 3, "503": 1},
    }
    return UploadResult(**{**figures, **changes})


# --- the report ----------------------------------------------------------------------------


def test_a_validations_report_has_its_keys_in_order():
    report = validation().to_json()
    assert list(report) == VALIDATION_KEYS
    assert report["by_event"] == {"Added to cart": 400, "Product viewed": 600}  # sorted
    assert list(report["by_event"]) == ["Added to cart", "Product viewed"]
    assert report["bytes"] == 9_000
    assert report["timezone"] == "UTC"


def test_an_uploads_report_adds_its_keys_after_the_validations():
    report = upload(skipped_files=(("old.csv", "already uploaded (3 events)"),)).to_json()
    assert list(report) == UPLOAD_KEYS
    assert report["files_skipped"] == [{"file": "old.csv", "why": "already uploaded (3 events)"}]
    assert report["status"] == "completed"
    assert report["status_counts"] == {"201": 3, "503": 1}


def test_the_report_lists_causes_found_before_sending_then_those_of_the_api():
    causes = upload().to_json()["rejects_by_cause"]
    assert causes == [
        {
            "cause": "data.productId: productId is blank",
            "count": 1,
            "examples": [
                {
                    "file": "a.csv",
                    "row": 4,
                    "field": "data.productId",
                    "reason": "productId is blank (column 'sku')",
                }
            ],
        },
        {"cause": "api: price must be a number", "count": 1, "examples": []},
    ]


def test_a_files_figures_say_how_it_was_mapped():
    assert FileFigures("a.csv", 5, PLAN).to_json() == {
        "file": "a.csv",
        "rows": 5,
        "mapping": {"data.productId": "sku", "userId": "user_id", "timestamp": "ts"},
        "event": None,
        "event_column": "event",
        "columns_not_sent": ["note"],
    }


def test_the_report_is_json_and_figures_is_the_same_data():
    result = upload()
    assert orjson.loads(orjson.dumps(result.to_json())) == result.figures


# --- DataFrames ----------------------------------------------------------------------------


def test_rejects_are_a_frame_of_file_row_field_reason_then_the_inputs_columns():
    result = validation(
        columns=("ts", "event", "sku", "user_id", "note", "ts", "sku", "extra"),
        kept_rejects=(BLANK,),
    )
    frame = result.rejects
    assert list(frame.columns) == [
        "file", "row", "field", "reason", "ts", "event", "sku", "user_id", "note", "extra",
    ]  # fmt: skip
    assert frame.iloc[0].tolist() == [
        "a.csv", 4, "data.productId", "productId is blank (column 'sku')",
        "2024-05-02", "view", "", "u4", "x", None,
    ]  # fmt: skip


def test_no_rejects_is_an_empty_frame_with_the_columns():
    frame = validation(columns=("sku",)).rejects
    assert frame.empty
    assert list(frame.columns) == ["file", "row", "field", "reason", "sku"]


def test_by_event_of_a_validation_counts_valid_events():
    expected = pd.DataFrame(
        {"valid": [400, 600]}, index=["Added to cart", "Product viewed"], dtype="int64"
    )
    expected.index.name = "event"
    pd.testing.assert_frame_equal(validation().by_event, expected)


def test_by_event_of_an_upload_adds_the_delivered_events():
    result = upload(
        valid_by_event={"Product viewed": 9},
        delivered_by_event={"Product viewed": 8, "Added to cart": 2},
    )
    expected = pd.DataFrame(
        {"valid": [0, 9]}, index=["Added to cart", "Product viewed"], dtype="int64"
    )
    expected["delivered"] = pd.array([2, 8], dtype="Int64")
    expected.index.name = "event"
    pd.testing.assert_frame_equal(result.by_event, expected)


# --- sample bodies and truncation ----------------------------------------------------------


def test_sample_payload_gives_the_first_bodies_as_dicts():
    result = validation(bodies=BODIES)
    assert result.sample_payload() == [orjson.loads(BODIES[0])]
    assert [b["track"][0]["payload"][0]["eventId"] for b in result.sample_payload(10)] == [
        "e0",
        "e1",
        "e2",
    ]


@pytest.mark.parametrize("n", [0, -1, 11])
def test_sample_payload_is_bounded(n):
    with pytest.raises(ValueError, match=rf"^n must be between 1 and 10; got {n}$"):
        validation(bodies=BODIES).sample_payload(n)


def test_rejects_truncated_when_more_were_seen_than_kept():
    assert validation(rejects_seen=2, kept_rejects=(BLANK,)).rejects_truncated
    assert not validation(rejects_seen=1, kept_rejects=(BLANK,)).rejects_truncated
    assert not validation().rejects_truncated


# --- repr and HTML -------------------------------------------------------------------------


def test_the_reprs_say_what_happened_in_one_line():
    assert repr(validation()) == (
        "<ValidationResult: 1,234 rows read, 1,000 valid events, 234 rejected>"
    )
    assert repr(upload()) == "<UploadResult completed: 8 events sent, 2 rejected>"
    assert repr(
        upload(
            status="interrupted",
            events_skipped_already_sent=1_500,
            skipped_files=(("a.csv", "already uploaded"), ("b.csv", "already uploaded")),
        )
    ) == (
        "<UploadResult interrupted: 8 events sent, 2 rejected, 1,500 sent by an earlier run, "
        "2 inputs uploaded before>"
    )
    one = upload(skipped_files=(("a.csv", "already uploaded"),))
    assert repr(one).endswith(", 1 input uploaded before>")


def test_the_html_summary_shows_the_figures_events_and_causes():
    page = validation()._repr_html_()
    assert page.startswith("<div><strong>Validation: nothing was sent</strong>")
    assert (
        '<tr><th style="text-align:left">rows read</th><td style="text-align:right">1,234</td></tr>'
        in page
    )
    assert "<thead><tr><th>event</th><th>valid</th></tr></thead>" in page
    assert (
        '<tr><th style="text-align:left">data.productId: productId is blank (column '
        '&#x27;sku&#x27;)</th><td style="text-align:right">2</td>'
        '<td style="text-align:right">a.csv row 4</td></tr>'
    ) in page


def test_the_html_summary_escapes_names_messages_and_causes():
    nasty = RowReject("<img src=x>/in.csv", 1, "api", "<b>bad</b>")
    result = upload(
        status="aborted",
        message="the API said <script>alert(1)</script>",
        skipped_files=(("<i>old</i>.csv", "already uploaded (1 events)"),),
        valid_by_event={"<Product> & co": 1},
        rejects_by_cause=(CauseCount("api: <b>bad</b>", 1, (nasty,)),),
    )
    page = result._repr_html_()
    assert "<script>" not in page and "<i>" not in page and "<b>" not in page
    assert "<Product>" not in page
    assert "the API said &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Skipped &lt;i&gt;old&lt;/i&gt;.csv: already uploaded (1 events)" in page
    assert "&lt;Product&gt; &amp; co" in page
    assert "api: &lt;b&gt;bad&lt;/b&gt;" in page
    assert "Delivered rows are recorded: run the same call again to resume." in page


def test_the_html_summary_says_when_rejects_were_cut_short():
    page = validation(rejects_seen=5, kept_rejects=(BLANK,))._repr_html_()
    assert (
        "<code>.rejects</code> holds the first 1 rejected rows; give <code>rejects=PATH</code> "
        "for all of them."
    ) in page
    assert "holds the first" not in validation()._repr_html_()
