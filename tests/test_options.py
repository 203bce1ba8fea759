"""Mapping options from flags, keyword arguments and a TOML file: one name each, checked
before anything is read, with the words the user sees."""

from __future__ import annotations

import re

import pytest

from uploader.errors import ConfigError
from uploader.options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_REQUEST_BYTES,
    FieldMap,
    Options,
    build_options,
)

NAMES = "'Product viewed', 'Added to cart', 'Removed from cart', 'Product ordered'"
KNOWN = (
    "batch_size, catalog, catalog_mode, decimal, delimiter, duplicates, encoding, event, "
    "event_column, event_map, keep_duplicates, "
    "mapping, max_request_bytes, no_timestamp, timestamp_format, timestamp_unit, timezone"
)


def refused(message: str, **given: object) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        build_options(None, **given)


# --- where values come from ----------------------------------------------------------------


def test_nothing_given_means_the_defaults():
    assert build_options(None) == Options()
    assert Options().batch_size == DEFAULT_BATCH_SIZE == 2000
    assert Options().max_request_bytes == DEFAULT_MAX_REQUEST_BYTES == 512 * 1024
    assert Options().timezone == "UTC"


def test_the_file_gives_values_under_the_flag_names_with_dashes_or_underscores(write_toml):
    path = write_toml(
        """
        event-column = "action"
        batch_size = 50
        timezone = "Europe/London"
        keep-duplicates = true
        [event-map]
        wishlist = "ignore"
        basket = "Added to cart"
        [map]
        productId = "StockCode"
        "data.price:number" = "UnitPrice"
        """
    )
    options = build_options(path)
    assert options.event_column == "action"
    assert options.batch_size == 50
    assert options.timezone == "Europe/London"
    assert options.keep_duplicates is True
    assert options.event_map == (("wishlist", "ignore"), ("basket", "Added to cart"))
    assert options.mapping == (
        FieldMap("data.productId", "StockCode"),
        FieldMap("data.price", "UnitPrice", "number"),
    )


def test_a_flag_wins_over_the_file_and_a_list_flag_replaces_the_files_list(write_toml):
    path = write_toml('batch-size = 50\ntimezone = "Europe/London"\n[map]\nproductId = "sku"\n')
    options = build_options(path, batch_size=7, mapping=["userId=customer"])
    assert options.batch_size == 7
    assert options.timezone == "Europe/London"  # not given as a flag: the file's
    assert options.mapping == (FieldMap("userId", "customer"),)


def test_flags_not_given_leave_the_files_values(write_toml):
    path = write_toml('batch-size = 50\n[event-map]\nwishlist = "ignore"\n')
    options = build_options(path, batch_size=None, event_map=[], mapping=(), timezone=None)
    assert options.batch_size == 50
    assert options.event_map == (("wishlist", "ignore"),)


def test_an_unreadable_file_is_named():
    with pytest.raises(ConfigError) as caught:
        build_options("/nonexistent/uploader.toml")
    assert str(caught.value) == (
        "--config /nonexistent/uploader.toml: cannot read (No such file or directory)"
    )


def test_a_file_that_is_not_toml_is_named_with_the_parsers_words(write_toml):
    path = write_toml("batch-size = \n")
    with pytest.raises(ConfigError) as caught:
        build_options(path)
    assert str(caught.value) == (
        f"--config {path}: not valid TOML (Invalid value (at line 1, column 14))"
    )


def test_unknown_keyword_options_are_listed_with_the_known_ones():
    refused(f"unknown option batch, colour; known options: {KNOWN}", colour="red", batch=1)


# --- --event-map ---------------------------------------------------------------------------


def test_event_map_pairs_keep_their_order_and_ignore_is_case_insensitive():
    options = build_options(None, event_map=["wishlist=IGNORE", " basket = Added to cart "])
    assert options.event_map == (("wishlist", "ignore"), ("basket", "Added to cart"))


def test_event_map_as_a_mapping_from_python():
    options = build_options(None, event_map={"wishlist": "ignore", "buy": "Product ordered"})
    assert options.event_map == (("wishlist", "ignore"), ("buy", "Product ordered"))


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            "wishlist=product viewed",
            "--event-map wishlist=product viewed: 'product viewed' is not an event name "
            f"(did you mean 'Product viewed'?); use one of {NAMES}, or 'ignore' to leave those "
            "rows out",
        ),
        (
            "basket=cart",
            "--event-map basket=cart: 'cart' is not an event name (did you mean 'Added to "
            f"cart'?); use one of {NAMES}, or 'ignore' to leave those rows out",
        ),
        (
            "wishlist=Viewed",
            f"--event-map wishlist=Viewed: 'Viewed' is not an event name; use one of {NAMES}, "
            "or 'ignore' to leave those rows out",
        ),
    ],
)
def test_event_map_names_must_be_the_apis_exact_names(item, message):
    refused(message, event_map=[item])


@pytest.mark.parametrize("item", ["wishlist", "=Product viewed", "wishlist= "])
def test_event_map_items_must_be_key_value_and_the_example_is_an_event_map(item):
    refused(
        f"--event-map {item!r}: expected KEY=VALUE, e.g. --event-map 'basket=Added to cart'",
        event_map=[item],
    )


# --- --map ---------------------------------------------------------------------------------


def test_map_items_become_field_maps_with_product_id_in_data():
    options = build_options(None, mapping=["productId=sku", "data.qty:integer=q", "timestamp=when"])
    assert options.mapping == (
        FieldMap("data.productId", "sku"),
        FieldMap("data.qty", "q", "integer"),
        FieldMap("timestamp", "when"),
    )


@pytest.mark.parametrize("item", ["userId", "=customer", "userId=  "])
def test_map_items_must_be_key_value(item):
    refused(f"--map {item!r}: expected KEY=VALUE, e.g. --map productId=sku", mapping=[item])


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("name=action", "--map name=action: the event comes from --event-column or --event"),
        ("event=action", "--map event=action: the event comes from --event-column or --event"),
        ("productId:string=sku", "--map productId:string: productId is always sent as text"),
        (
            "data.my-key=x",
            "--map data.my-key: data keys are letters, digits and underscores, e.g. data.price",
        ),
        (
            "data.9lives=x",
            "--map data.9lives: data keys are letters, digits and underscores, e.g. data.price",
        ),
        (
            "data.price:float=p",
            "--map data.price:float: the type is one of string, number, integer, boolean",
        ),
        ("userId:string=u", "--map userId:string: only data.<key> fields take a type"),
        (
            "colour=c",
            "--map colour=c: unknown field; map one of productId, eventId, userId, profileId, "
            "anotherUserId, accountId, sessionId, timestamp, data.<key>",
        ),
    ],
)
def test_map_fields_and_types_are_checked(item, message):
    refused(message, mapping=[item])


@pytest.mark.parametrize("kind", ["string", "number", "integer", "boolean"])
def test_each_data_type_is_accepted(kind):
    (field_map,) = build_options(None, mapping=[f"data.flag:{kind}=f"]).mapping
    assert field_map == FieldMap("data.flag", "f", kind)


def test_a_field_mapped_twice_is_refused_even_when_spelled_differently():
    refused(
        "--map data.productId is given twice; keep one", mapping=["productId=a", "data.productId=b"]
    )


# --- the other options ---------------------------------------------------------------------


def test_event_and_event_column_exclude_each_other():
    refused(
        "give --event (one event for every row) or --event-column, not both",
        event="Product viewed",
        event_column="action",
    )


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            "purchase",
            f"--event 'purchase' is not an event name (did you mean 'Product ordered'?); "
            f"use {NAMES}",
        ),
        ("Viewed", f"--event 'Viewed' is not an event name; use {NAMES}"),
    ],
)
def test_event_must_be_one_of_the_four_names(event, message):
    refused(message, event=event)


def test_timestamp_unit_is_one_of_four():
    refused("--timestamp-unit 'h': use one of s, ms, us, ns", timestamp_unit="h")
    assert build_options(None, timestamp_unit="us").timestamp_unit == "us"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../etc/passwd", ""])
def test_timezone_must_be_an_iana_name(zone):
    refused(
        f"--timezone {zone!r} is not a known time zone; "
        "use an IANA name such as UTC or Europe/London",
        timezone=zone,
    )


def test_a_known_timezone_is_kept():
    assert build_options(None, timezone="America/New_York").timezone == "America/New_York"


def test_batch_size_is_at_least_one():
    refused("--batch-size must be at least 1, not 0", batch_size=0)
    refused("--batch-size must be at least 1, not -5", batch_size=-5)
    assert build_options(None, batch_size=1).batch_size == 1


def test_max_request_bytes_is_at_least_1024():
    refused("--max-request-bytes must be at least 1024, not 1023", max_request_bytes=1023)
    assert build_options(None, max_request_bytes=1024).max_request_bytes == 1024


# --- values of the wrong type (a TOML file or a keyword argument can hold anything) --------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('batch-size = "500"', "--batch-size must be a whole number, not '500'"),
        ("max-request-bytes = 1e6", "--max-request-bytes must be a whole number, not 1000000.0"),
        ("batch-size = true", "--batch-size must be a whole number, not True"),
        ("timezone = 5", "--timezone must be text, not 5"),
        ("event = 1", "--event must be text, not 1"),
        ('no-timestamp = "false"', "--no-timestamp must be true or false, not 'false'"),
        ("keep-duplicates = 1", "--keep-duplicates must be true or false, not 1"),
        (
            'event-map = "wishlist=ignore"',
            "--event-map takes a list of KEY=VALUE items (or a table), e.g. --event-map "
            "'basket=Added to cart'; got 'wishlist=ignore'",
        ),
        (
            "map = 5",
            "--map takes a list of KEY=VALUE items (or a table), e.g. --map productId=sku; got 5",
        ),
    ],
)
def test_a_value_of_the_wrong_type_in_the_file_is_a_config_error(write_toml, line, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        build_options(write_toml(line + "\n"))
