"""What the Track Events API (Recommendations) accepts, as the uploader must treat it.

See ../shared/intempt-api.md: the four event names, the item fields and the timestamp window
are the API's, not ours to choose.
"""

from __future__ import annotations

EVENT_NAMES = ("Product viewed", "Added to cart", "Removed from cart", "Product ordered")

# Raw event values that mean one of the four without an --event-map (compared lowercased).
EVENT_ALIASES = {
    "view": "Product viewed",
    "product_view": "Product viewed",
    "product_viewed": "Product viewed",
    "cart": "Added to cart",
    "addtocart": "Added to cart",
    "add_to_cart": "Added to cart",
    "added_to_cart": "Added to cart",
    "remove_from_cart": "Removed from cart",
    "removefromcart": "Removed from cart",
    "removed_from_cart": "Removed from cart",
    "purchase": "Product ordered",
    "transaction": "Product ordered",
    "order": "Product ordered",
    "product_ordered": "Product ordered",
}

# Item fields the uploader can fill from a column, besides data.<key>.
IDENTITY_FIELDS = ("userId", "profileId", "accountId")  # at least one must be non-blank
ITEM_ID_FIELDS = ("userId", "profileId", "anotherUserId", "accountId", "sessionId")
TOP_LEVEL_FIELDS = ("eventId", *ITEM_ID_FIELDS, "timestamp")
PRODUCT_FIELD = "data.productId"

# The API rejects a whole request holding a timestamp before 2010 and silently rewrites one
# from about 2040 on to "now"; inside this window a timestamp is stored as given.
MIN_TIMESTAMP_MS = 1_262_304_000_000  # 2010-01-01T00:00:00Z
MAX_TIMESTAMP_MS = 2_208_988_800_000  # 2040-01-01T00:00:00Z (exclusive)


def canonical_event_name(value: str) -> str | None:
    """The API's name for a raw event value, or None when it is not one we know."""
    text = value.strip()
    if text in EVENT_NAMES:
        return text
    lowered = text.lower()
    for name in EVENT_NAMES:
        if name.lower() == lowered:
            return name
    return EVENT_ALIASES.get(lowered.replace(" ", "_").replace("-", "_"))
