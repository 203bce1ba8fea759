"""The first run on an unknown export: every mapping problem at once, with the columns whose
values could settle each, one of their values and the flag that maps them."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from uploader.cli import main
from uploader.errors import InputError
from uploader.mapping import plan_mapping
from uploader.options import build_options


def hm_purchases(n: int = 60) -> str:
    """An export shaped like H&M's transactions: a day, a hashed customer, an article
    number, a price and a channel; no event column."""
    customers = [hashlib.sha256(f"c{i}".encode()).hexdigest() for i in range(40)]
    articles = [str(600000001 + 1000 * i) for i in range(50)]
    lines = ["t_dat,customer_id,article_id,price,sales_channel_id"]
    for i in range(n):
        lines.append(
            f"2018-09-{20 + i % 5:02d},{customers[i % 40]},{articles[(i * 7) % 50]},"
            f"0.0{(i * 37) % 90 + 10}8,{1 + i % 2}"
        )
    return "\n".join(lines) + "\n"


NO_EVENT = (
    "no event column found (looked for event_type, event, event_name, type, action). Give "
    "--event-column COL, or --event NAME when every row is the same event (an orders table: "
    "--event 'Product ordered'); names: 'Product viewed', 'Added to cart', 'Removed from "
    "cart', 'Product ordered'"
)
HM_COLUMNS = "'t_dat', 'customer_id', 'article_id', 'price', 'sales_channel_id'"
NO_PRODUCT = (
    "no column for productId (looked for product_id, sku, item_id, stock_code…); give --map "
    f"productId=COL. The columns are {HM_COLUMNS}"
)
NO_TIMESTAMP = (
    "no timestamp column (looked for timestamp, event_time, date, created_at, invoice_date…); "
    "give --map timestamp=COL. Without a timestamp the API stamps the upload time, turning "
    "history into today's events: pass --no-timestamp only if that is what you want"
)
ARTICLE = (
    "    'article_id': 50 distinct numbers in 60 rows, e.g. '600000001': --map productId=article_id"
)
T_DAT = (
    "    't_dat': read as timestamps (ISO 8601 text without zone, read as UTC), "
    "e.g. '2018-09-20': --map timestamp=t_dat"
)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_an_unknown_export_gets_every_problem_at_once_with_candidates(capsys, write_csv):
    path = write_csv(hm_purchases(), "transactions.csv")
    code, out, err = run(capsys, "validate", path)
    assert (code, out) == (2, "")
    assert err == "\n".join(
        [
            f"uploader: error: {path}: 3 mapping problems (candidates from its first 60 rows):",
            f"- {NO_EVENT}",
            "    no column's values look like event names (view, cart, purchase…): every row "
            "is then one event (--event NAME)",
            f"- {NO_PRODUCT}",
            ARTICLE,
            f"- {NO_TIMESTAMP}",
            T_DAT,
            "All at once: --event NAME --map productId=article_id --map timestamp=t_dat",
            "",
        ]
    )


def test_following_the_suggestion_maps_the_file(capsys, write_csv):
    path = write_csv(hm_purchases(), "transactions.csv")
    code, out, _ = run(
        capsys, "validate", path, "--event", "Product ordered",
        "--map", "productId=article_id", "--map", "timestamp=t_dat",
    )  # fmt: skip
    assert code == 0
    assert (
        "Mapping: every row is 'Product ordered'; productId <- article_id (--map), "
        "timestamp <- t_dat (--map), userId <- customer_id, data.price <- price." in out
    )


def test_one_problem_keeps_its_words_and_gains_its_candidates(write_csv, run_plan):
    path = write_csv(hm_purchases(), "transactions.csv")
    with pytest.raises(InputError) as info:
        run_plan([path], event="Product ordered", mapping=["timestamp=t_dat"])
    assert str(info.value) == f"{path}: {NO_PRODUCT}\n{ARTICLE}"


def test_rows_are_looked_at_only_when_the_names_leave_a_problem():
    looked: list[int] = []

    def sample() -> pa.Table:
        looked.append(1)
        return pa.table({"ts": ["2024-05-02"], "event": ["view"], "sku": ["S1"], "u": ["u1"]})

    options = build_options(None)
    plan_mapping(("ts", "event", "sku", "user_id"), options, "a.csv", sample)
    assert looked == []
    with pytest.raises(InputError, match="no identity column"):
        plan_mapping(("ts", "event", "sku", "u"), options, "a.csv", sample)
    assert looked == [1]


def test_a_column_of_event_values_is_suggested_with_its_values(write_csv, run_plan):
    kinds = ["view", "cart", "purchase", "view", "wishlist"]
    rows = [f"2024-05-02T10:00:0{i % 10}Z,S{i},u{i},{kinds[i % 5]}" for i in range(30)]
    path = write_csv("ts,sku,user_id,what\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError) as info:
        run_plan([path])
    assert str(info.value).splitlines()[1] == (
        "    'what': 4 distinct values: 'view' (Product viewed), 'cart' (Added to cart), "
        "'purchase' (Product ordered), 'wishlist' (not an event name: --event-map), "
        "e.g. 'view': --event-column what"
    )


def test_two_columns_for_one_field_are_shown_with_a_value_each(write_csv, run_plan):
    rows = [f"2024-05-02T10:00:00Z,view,S{i},u{i},u{i}@example.com" for i in range(12)]
    path = write_csv("ts,event,sku,user_id,email\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError) as info:
        run_plan([path])
    assert str(info.value) == "\n".join(
        [
            f"{path}: userId could come from any of the columns 'user_id', 'email'; choose "
            "one with --map userId=COL",
            "    'user_id': 12 distinct codes without spaces in 12 rows, e.g. 'u0': "
            "--map userId=user_id",
            "    'email': 12 distinct emails in 12 rows, e.g. 'u0@example.com': --map userId=email",
        ]
    )


def test_typed_and_epoch_timestamps_and_a_typo_in_a_flag_are_all_reported(write_parquet, run_plan):
    start = datetime(2024, 5, 2, tzinfo=UTC)
    table = pa.table(
        {
            "at": pa.array(
                [start + timedelta(hours=i) for i in range(20)], pa.timestamp("ms", "UTC")
            ),
            "epoch": pa.array([1714644000000 + i for i in range(20)], pa.int64()),
            "ref": pa.array([f"P-{i:03d}" for i in range(20)]),
            "customer": pa.array([f"c{i % 7}" for i in range(20)]),
        }
    )
    path = write_parquet(table)
    with pytest.raises(InputError) as info:
        run_plan([path], event="Product viewed", mapping=["userId=Customer"])
    lines = str(info.value).splitlines()
    assert lines[0] == f"{path}: 3 mapping problems (candidates from its first 20 rows):"
    assert lines[1] == (
        "- --map userId=Customer: no column 'Customer' (did you mean 'customer'?); the columns "
        "are 'at', 'epoch', 'ref', 'customer'"
    )
    assert lines[3] == (
        "    'ref': 20 distinct codes without spaces in 20 rows, e.g. 'P-000': --map productId=ref"
    )
    assert lines[6] == (
        "    'at': read as timestamps (timestamp[ms, tz=UTC]), e.g. '2024-05-02 00:00:00.000Z': "
        "--map timestamp=at"
    )
    assert lines[7] == (
        "    'epoch': read as timestamps (epoch milliseconds (inferred from magnitude)), "
        "e.g. '1714644000000': --map timestamp=epoch"
    )


def test_a_session_column_is_not_the_first_suggestion_for_a_person(write_csv, run_plan):
    rows = [
        f"2024-05-02T10:00:00Z,view,S{i},{400 + i % 12},{i:08d}-4dac-4778-8d2c-92e149dab885"
        for i in range(30)
    ]
    path = write_csv("ts,event,sku,who,sess\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError) as info:
        run_plan([path])
    assert [line.split(":")[0] for line in str(info.value).splitlines()[1:]] == [
        "    'who'",
        "    'sess'",
    ]
