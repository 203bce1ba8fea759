"""The track API's body rules, checked strictly. Pure: bytes in, events or one rejection out.

The real API's rules are gathered in ../shared/intempt-api.md. Where it is lenient or
unknown, the sandbox takes the strict side, so that a body it accepts is one the real API
stores as intended. The whole request is refused on the first bad item, as the API does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

# The four recommendation events; the API matches names exactly (only the first word capitalised).
EVENT_NAMES = ("Product viewed", "Added to cart", "Removed from cart", "Product ordered")

# 2010-01-01T00:00:00Z: the API refuses the whole request for anything earlier.
MIN_TIMESTAMP_MS = 1_262_304_000_000

# 2040-01-01T00:00:00Z: from here on the API silently replaces the timestamp with its clock.
REWRITE_FROM_MS = 2_208_988_800_000

# The server requires one of these, non-blank ("Either userId or profileId or accountId ...").
IDENTITY_FIELDS = ("userId", "profileId", "accountId")

# Documented item fields and their JSON type. Anything else is refused: a typo would vanish.
FIELD_KINDS: dict[str, type] = {
    **dict.fromkeys(
        ("eventId", "anotherUserId", "anotherAccountId", "sessionId", "pageId", *IDENTITY_FIELDS),
        str,
    ),
    **dict.fromkeys(("data", "userAttributes", "accountAttributes"), dict),
    "timestamp": int,
}

# Longest quoted bad value in an error message: enough to recognise it, never a whole payload.
MAX_QUOTED = 60


class Event(NamedTuple):
    """One accepted payload item: it becomes one stored event.

    A NamedTuple, not a frozen dataclass: benchmarks validate ~500k items a second, and a
    frozen dataclass costs several times more to build.
    """

    name: str
    item: dict[str, Any]
    event_id: str | None
    timestamp: int | None
    rewritten: bool

    def stored_timestamp(self, now_ms: int) -> int:
        """The timestamp the API keeps: arrival time when absent or past 2040."""
        if self.timestamp is None or self.rewritten:
            return now_ms
        return self.timestamp


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why the whole request gets 400, and where: group and item are 0-based indexes."""

    error: str
    group: int | None = None
    item: int | None = None
    field: str | None = None

    def to_json(self) -> dict[str, Any]:
        where = {"group": self.group, "item": self.item, "field": self.field}
        return {"error": self.error, **{k: v for k, v in where.items() if v is not None}}


class _Refused(Exception):
    def __init__(self, error: str, field: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.field = field


def check_body(raw: bytes) -> list[Event] | Rejection:
    """Every item of a track body as an Event, or the first reason to refuse the request."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection(f"body is not valid JSON (NaN and Infinity are not JSON either): {exc}")
    if not isinstance(body, dict) or "track" not in body:
        return Rejection('body must be a JSON object {"track": [...]}', field="track")
    extra = sorted(key for key in body if key != "track")
    if extra:
        return Rejection(f"unknown top-level field {_quote(extra[0])}", field=extra[0])
    groups = body["track"]
    if not isinstance(groups, list) or not groups:
        return Rejection("track must be a non-empty list of groups", field="track")

    events: list[Event] = []
    for g, group in enumerate(groups):
        try:
            name, payload = _check_group(group)
        except _Refused as refused:
            return Rejection(refused.error, group=g, field=refused.field)
        for i, item in enumerate(payload):
            try:
                events.append(_check_item(name, item))
            except _Refused as refused:
                return Rejection(refused.error, group=g, item=i, field=refused.field)
    return events


def _check_group(group: Any) -> tuple[str, list[Any]]:
    if not isinstance(group, dict):
        raise _Refused("each group must be an object with name and payload")
    extra = sorted(key for key in group if key not in ("name", "payload"))
    if extra:
        raise _Refused(f"unknown group field {_quote(extra[0])}", extra[0])
    name = group.get("name")
    if name not in EVENT_NAMES:
        allowed = ", ".join(repr(n) for n in EVENT_NAMES)
        raise _Refused(f"name must be one of {allowed}; got {_quote(name)}", "name")
    payload = group.get("payload")
    if not isinstance(payload, list) or not payload:
        raise _Refused("payload must be a non-empty list of items", "payload")
    return name, payload


def _check_item(name: str, item: Any) -> Event:
    # The hot loop of null-mode benchmarks: plain type() tests and no allocations on success.
    if type(item) is not dict:
        raise _Refused("each payload item must be an object")
    for key, value in item.items():
        kind = FIELD_KINDS.get(key)
        if value is None:
            raise _Refused("null is not allowed: omit absent fields", key)
        if kind is str:
            if type(value) is not str or not value or value.isspace():
                raise _Refused(f"{key} must be a non-blank string (omit it when absent)", key)
        elif kind is dict:
            if type(value) is not dict:
                raise _Refused(f"{key} must be an object", key)
            for inner in value.values():
                if inner is None or type(inner) is dict or type(inner) is list:
                    _refuse_nulls(value, key)
                    break
        elif kind is int:
            _check_timestamp(value)
        elif key == "productId":
            raise _Refused(
                "productId at item level turns the event into catalogue ingestion: "
                "put it in data.productId",
                key,
            )
        else:
            known = ", ".join(sorted(FIELD_KINDS))
            raise _Refused(f"unknown item field {_quote(key)} (known: {known})", key)

    if "userId" not in item and "profileId" not in item and "accountId" not in item:
        raise _Refused("Either userId or profileId or accountId is required", "userId")
    data = item.get("data")
    product_id = data.get("productId") if data is not None else None
    if type(product_id) is not str or not product_id or product_id.isspace():
        raise _Refused("data.productId must be a non-blank string", "data.productId")
    quantity = data.get("quantity", 1) if data is not None else 1
    if type(quantity) is not int or quantity < 1:
        raise _Refused(
            f"data.quantity must be a positive integer; got {_quote(quantity)}", "data.quantity"
        )

    timestamp = item.get("timestamp")
    rewritten = timestamp is not None and timestamp >= REWRITE_FROM_MS
    return Event(name, item, item.get("eventId"), timestamp, rewritten)


def _check_timestamp(value: Any) -> None:
    # type() rather than isinstance(): True is an int to Python and 1 ms to nobody.
    if type(value) is not int:
        raise _Refused(
            f"timestamp must be an integer of epoch milliseconds; got {_quote(value)}",
            "timestamp",
        )
    if value < MIN_TIMESTAMP_MS:
        raise _Refused(
            f"timestamp {value} is before 2010-01-01 ({MIN_TIMESTAMP_MS} ms): "
            "seconds instead of milliseconds? The whole request is refused",
            "timestamp",
        )


def _refuse_nulls(value: Any, path: str) -> None:
    if value is None:
        raise _Refused("null is not allowed: omit absent fields", path)
    if type(value) is dict:
        for key, inner in value.items():
            if inner is None or type(inner) in (dict, list):
                _refuse_nulls(inner, f"{path}.{key}")
    elif type(value) is list:
        for i, inner in enumerate(value):
            _refuse_nulls(inner, f"{path}[{i}]")


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 3] + "..."
