from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uploader.timestamps import to_epoch_ms

MS_2024 = 1714660704000  # 2024-05-02T14:38:24Z


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-02T14:38:24Z",
        "2024-05-02 14:38:24 UTC",
        "2024-05-02T16:38:24+02:00",
        "2024-05-02T10:38:24-0400",
        "  2024-05-02 14:38:24  ",  # naive, read as UTC
        "1714660704",
        "1714660704000",
        "1714660704000000",
        "1714660704000000000",
        "1714660704.0",
    ],
)
def test_text_forms_give_the_same_millisecond(text):
    result = to_epoch_ms(pa.array([text]), unit=None, timezone="UTC")
    assert result.to_arrow().to_pylist() == [MS_2024], result.problems


def test_naive_text_is_read_in_the_given_zone_and_reported():
    result = to_epoch_ms(pa.array(["2024-05-02 15:38:24"]), unit=None, timezone="Europe/London")
    assert result.to_arrow().to_pylist() == [MS_2024]
    assert result.methods == {"ISO 8601 text without zone, read as Europe/London": 1}


def test_a_bare_date_is_midnight_in_the_zone_not_an_offset():
    result = to_epoch_ms(pa.array(["2024-05-02"]), unit=None, timezone="UTC")
    assert result.to_arrow().to_pylist() == [1714608000000]


def test_ambiguous_autumn_hour_is_read_as_its_first_occurrence():
    result = to_epoch_ms(pa.array(["2010-10-31 01:30:00"]), unit=None, timezone="Europe/London")
    assert result.to_arrow().to_pylist() == [1288485000000]  # 00:30 UTC, still summer time


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_arrow_timestamps_of_any_unit_and_zone(unit):
    instant = pd.Timestamp("2024-05-02T16:38:24.123456789+02:00")
    array = pa.array([instant], pa.timestamp(unit, tz="Europe/Berlin"))
    expected = MS_2024 + (0 if unit == "s" else 123)
    assert to_epoch_ms(array, unit=None, timezone="UTC").to_arrow().to_pylist() == [expected]


def test_naive_arrow_timestamps_and_dates_use_the_zone():
    naive = pa.array([dt.datetime(2024, 5, 2, 15, 38, 24)], pa.timestamp("us"))
    assert to_epoch_ms(naive, unit=None, timezone="Europe/London").to_arrow().to_pylist() == [
        MS_2024
    ]
    dates = pa.array([dt.date(2024, 5, 2)])
    assert to_epoch_ms(dates, unit=None, timezone="UTC").to_arrow().to_pylist() == [1714608000000]


def test_numeric_unit_is_inferred_per_value_and_reported():
    array = pa.array([1714660704, 1714660704000, None], pa.int64())
    result = to_epoch_ms(array, unit=None, timezone="UTC")
    assert result.to_arrow().to_pylist() == [MS_2024, MS_2024, None]
    assert result.methods == {
        "epoch seconds (inferred from magnitude)": 1,
        "epoch milliseconds (inferred from magnitude)": 1,
    }


def test_explicit_unit_that_puts_a_value_out_of_window_is_a_problem():
    result = to_epoch_ms(pa.array([1714660704000]), unit="s", timezone="UTC")
    assert result.to_arrow().to_pylist() == [None]
    assert "read as seconds" in result.problems[0]
    assert "--timestamp-unit" in result.problems[0]


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("2009-12-31T23:59:59Z", "outside 2010-01-01..2039-12-31"),
        ("2040-01-01T00:00:00Z", "outside 2010-01-01..2039-12-31"),
        ("12345", "is not a date in 2010-2039"),
        ("yesterday", "is not an ISO 8601 date-time"),
    ],
)
def test_values_outside_the_window_or_unreadable_are_problems(value, fragment):
    result = to_epoch_ms(pa.array([value]), unit=None, timezone="UTC")
    assert result.to_arrow().to_pylist() == [None]
    assert fragment in result.problems[0]


def test_window_edges():
    result = to_epoch_ms(
        pa.array(["2010-01-01T00:00:00Z", "2039-12-31T23:59:59.999Z"]), unit=None, timezone="UTC"
    )
    assert result.to_arrow().to_pylist() == [1262304000000, 2208988799999]


def test_blank_is_absent_not_a_problem():
    result = to_epoch_ms(pa.array(["", "  ", None]), unit=None, timezone="UTC")
    assert result.to_arrow().to_pylist() == [None, None, None]
    assert result.problems == {}


def test_custom_format():
    result = to_epoch_ms(
        pa.array(["5/2/2024 14:38", "13/45/2024 10:00"]),
        unit=None,
        timezone="UTC",
        fmt="%m/%d/%Y %H:%M",
    )
    assert result.to_arrow().to_pylist() == [MS_2024 - 24000, None]
    assert "does not match --timestamp-format" in result.problems[1]


ZONES = ["Z", "+00:00", "+02:00", "-05:30", "+0100", " UTC", "UTC", " GMT", ""]


@st.composite
def iso_columns(draw):
    """A column of ISO 8601 texts as exports write them: one layout for the whole column
    (one separator, one precision, with or without zone), random instants, sometimes a
    malformed value."""
    separator = draw(st.sampled_from(["T", " "]))
    digits = draw(st.sampled_from([0, 3, 6, 9]))
    zoned = draw(st.booleans())
    whole_day = draw(st.booleans()) and not zoned
    values = []
    for _ in range(draw(st.integers(1, 12))):
        moment = draw(st.datetimes(dt.datetime(2005, 1, 1), dt.datetime(2045, 1, 1)))
        text = moment.strftime("%Y-%m-%d")
        if not whole_day:
            text += separator + moment.strftime("%H:%M:%S")
            if digits:
                text += "." + f"{moment.microsecond:06d}{draw(st.integers(0, 999)):03d}"[:digits]
            if zoned:
                text += draw(st.sampled_from(ZONES[:-1]))
        values.append(text)
    if draw(st.booleans()):
        values[draw(st.integers(0, len(values) - 1))] = draw(
            st.sampled_from(["2024-13-01", "2024-05-02T25:00:00", "yesterday", "2024-5-2 10:00"])
        )
    return values


@settings(max_examples=300, deadline=None)
@given(values=iso_columns(), timezone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]))
def test_arrows_fast_iso_parse_agrees_with_the_general_path(values, timezone):
    # A blank value sends the column through the general (pandas) path: the same values
    # must give the same milliseconds, the same rows accepted and the same labels.
    fast = to_epoch_ms(pa.array(values), unit=None, timezone=timezone)
    general = to_epoch_ms(pa.array([*values, ""]), unit=None, timezone=timezone)
    assert fast.present.tolist() == general.present[:-1].tolist()
    assert fast.millis[fast.present].tolist() == general.millis[:-1][fast.present].tolist()
    assert fast.methods == general.methods
    assert fast.problems.keys() == general.problems.keys()
