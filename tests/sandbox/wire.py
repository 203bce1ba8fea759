"""Builders for track bodies and a sender, shared by the sandbox tests."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import orjson

from uploader.sandbox import Sandbox

# 2024-05-02: inside the window the API stores as sent.
TS = 1_714_631_904_000

# Marks a field to leave out of an item.
OMIT: Any = object()

_ids = itertools.count(1)


def item(**fields: Any) -> dict[str, Any]:
    """A valid Added-to-cart item; keyword arguments replace fields, OMIT removes them."""
    base: dict[str, Any] = {
        "eventId": f"evt-{next(_ids)}",
        "userId": "shopper@example.com",
        "timestamp": TS,
        "data": {"productId": "SKU_987", "quantity": 2},
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not OMIT}


def body(*items: dict[str, Any], name: str = "Added to cart") -> dict[str, Any]:
    return {"track": [{"name": name, "payload": list(items) or [item()]}]}


def post(
    client: httpx.Client,
    sb: Sandbox,
    payload: Any,
    *,
    auth: tuple[str, str] | None = None,
    url: str | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """POST a body (an object as JSON, bytes as they are) with the sandbox's key by default."""
    prefix, _, secret = sb.api_key.partition(".")
    content = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return client.post(
        url or sb.track_url,
        content=content,
        headers=headers,
        auth=auth or (prefix, secret),
        **kwargs,
    )
