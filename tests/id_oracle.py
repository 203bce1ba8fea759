"""A scalar reference for the id text, written from docs/event-ids.md and not from the code.

It is the test oracle that the column-wise builder in uploader/event_ids.py (the product)
must agree with, value for value: tests/test_event_ids.py holds the two equal on random rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

TAG = "uploader-event-id/v1"
# Doubles whose decimal exponent is in this range are written without an exponent.
PLAIN_EXPONENTS = range(-6, 10)


def canonical_text(name: str, fields: Iterable[tuple[str, Any]], occurrence: int = 1) -> str:
    lines = [TAG, f"name={escape(name)}"]
    lines += [f"{path}={value_text(value)}" for path, value in sorted(fields)]
    if occurrence > 1:
        lines.append(f"occurrence={occurrence}")
    return "\n".join(lines)


def event_id(text: str) -> str:
    h = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{h[0:8]}-{h[8:12]}-8{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def value_text(value: Any) -> str:
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return number_text(float(value))


def number_text(value: float) -> str:
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))  # -0.0 too: "0"
    sign, digits, exponent = Decimal(repr(value)).as_tuple()  # repr: the shortest round trip
    text = "".join(map(str, digits)).rstrip("0") or "0"
    assert isinstance(exponent, int)
    power = len(digits) + exponent - 1  # of the first digit
    minus = "-" if sign else ""
    if power in PLAIN_EXPONENTS:
        if power < 0:
            return f"{minus}0.{'0' * (-power - 1)}{text}"
        whole, fraction = text[: power + 1].ljust(power + 1, "0"), text[power + 1 :]
        return minus + whole + (f".{fraction}" if fraction else "")
    mantissa = text[0] + (f".{text[1:]}" if len(text) > 1 else "")
    return f"{minus}{mantissa}e{'+' if power >= 0 else '-'}{abs(power)}"


def escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
