from __future__ import annotations

import pytest

from uploader.errors import ConfigError, InputError
from uploader.mapping import plan_mapping
from uploader.options import build_options


def plan(columns, **options):
    return plan_mapping(columns, build_options(None, **options), "in.csv")


def paths(p):
    return {f.path: f.column for f in p.fields}


def test_common_names_are_detected_and_the_rest_ignored():
    p = plan(["event_time", "event_type", "product_id", "user_id", "price", "user_session"])
    assert p.event_column == "event_type"
    assert paths(p) == {
        "timestamp": "event_time",
        "data.productId": "product_id",
        "userId": "user_id",
        "data.price": "price",
    }
    assert p.ignored == ("user_session",)


def test_an_orders_table_with_uci_names():
    p = plan(
        ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
         "CustomerID", "Country"],
        event="Product ordered",
    )  # fmt: skip
    assert p.event == "Product ordered"
    assert paths(p) == {
        "data.productId": "StockCode",
        "userId": "CustomerID",
        "timestamp": "InvoiceDate",
        "data.quantity": "Quantity",
        "data.price": "UnitPrice",
        "data.orderId": "InvoiceNo",
    }
    assert p.ignored == ("Description", "Country")


def test_ambiguous_detection_names_the_candidates_and_the_flag():
    with pytest.raises(InputError) as info:
        plan(["ts", "event", "sku", "user_id", "email"])
    assert "'user_id', 'email'" in str(info.value)
    assert "--map userId=COL" in str(info.value)


def test_explicit_map_wins_over_detection_and_resolves_ambiguity():
    p = plan(["ts", "event", "sku", "user_id", "email"], mapping=["userId=email"])
    assert paths(p)["userId"] == "email"
    assert "user_id" in p.ignored


def test_map_to_a_missing_column_suggests_the_close_one():
    with pytest.raises(InputError, match=r"no column 'customerid' \(did you mean 'CustomerID'\?\)"):
        plan(["ts", "event", "sku", "CustomerID"], mapping=["userId=customerid"])


@pytest.mark.parametrize(
    ("columns", "options", "message"),
    [
        (["ts", "event", "user_id"], {}, "no column for productId"),
        (["ts", "event", "sku"], {}, "no identity column"),
        (["event", "sku", "user_id"], {}, "no timestamp column"),
        (["ts", "sku", "user_id"], {}, "no event column found"),
    ],
)
def test_missing_required_fields_say_what_to_do(columns, options, message):
    with pytest.raises(InputError, match=message):
        plan(columns, **options)


def test_no_timestamp_is_an_explicit_opt_in():
    p = plan(["event", "sku", "user_id", "ts"], no_timestamp=True)
    assert "timestamp" not in paths(p)
    assert "ts" in p.ignored


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"event": "product viewed"}, "did you mean 'Product viewed'"),
        ({"event": "Product viewed", "event_column": "e"}, "not both"),
        ({"event_map": ["like=Liked"]}, "'Liked' is not an event name"),
        ({"mapping": ["price=UnitPrice"]}, "unknown field"),
        ({"mapping": ["data.unit price=x"]}, "data keys are letters"),
        ({"mapping": ["data.score:float=x"]}, "the type is one of"),
        ({"mapping": ["userId"]}, "expected KEY=VALUE"),
        ({"timezone": "Mars/Olympus"}, "not a known time zone"),
        ({"batch_size": 0}, "at least 1"),
    ],
)
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        plan(["ts", "event", "sku", "user_id"], **options)


def test_data_key_types_default_by_name_and_can_be_given():
    p = plan(
        ["ts", "event", "sku", "user_id", "revenue", "couponId", "note", "score"],
        mapping=["data.revenue=revenue", "data.couponId=couponId", "data.note=note",
                 "data.score:number=score"],
    )  # fmt: skip
    kinds = {f.path: f.kind for f in p.fields}
    assert kinds["data.revenue"] == "number"
    assert kinds["data.couponId"] == "id"
    assert kinds["data.note"] == "string"
    assert kinds["data.score"] == "number"


def test_toml_config_uses_the_same_keys(tmp_path):
    config = tmp_path / "map.toml"
    config.write_text(
        'event = "Product ordered"\ntimezone = "Europe/London"\n'
        '[map]\nproductId = "StockCode"\n"data.quantity" = "Qty"\n'
    )
    options = build_options(str(config), timezone="UTC")  # flags win over the file
    assert options.event == "Product ordered"
    assert options.timezone == "UTC"
    assert [(m.field, m.column) for m in options.mapping] == [
        ("data.productId", "StockCode"),
        ("data.quantity", "Qty"),
    ]


def test_unknown_toml_key_is_named(tmp_path):
    config = tmp_path / "map.toml"
    config.write_text('evnt = "Product ordered"\n')
    with pytest.raises(ConfigError, match="unknown option evnt"):
        build_options(str(config))
