"""The API's facts: which raw event values mean which of the four event names."""

from __future__ import annotations

import pytest

from uploader.contract import EVENT_ALIASES, EVENT_NAMES, canonical_event_name


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("Product viewed", "Product viewed"),
        ("product VIEWED", "Product viewed"),
        (" purchase ", "Product ordered"),
        ("Add-To-Cart", "Added to cart"),
        ("add to cart", "Added to cart"),
        ("removefromcart", "Removed from cart"),
        ("transaction", "Product ordered"),
    ],
)
def test_raw_values_that_mean_one_of_the_four(raw, name):
    assert canonical_event_name(raw) == name


@pytest.mark.parametrize("raw", ["wishlist", "", "Viewed", "views"])
def test_other_values_mean_none_of_them(raw):
    assert canonical_event_name(raw) is None


def test_every_alias_names_one_of_the_four_and_is_written_as_it_is_looked_up():
    assert set(EVENT_ALIASES.values()) <= set(EVENT_NAMES)
    for alias in EVENT_ALIASES:
        assert alias == alias.lower().replace(" ", "_").replace("-", "_")
