"""The limits and faults a sandbox can be asked for, and the seeded dice that trigger them."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from uploader.errors import ConfigError


def check_probability(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigError(f"{name} must be a probability from 0 to 1; got {value!r}")
    return float(value)


def check_positive(value: object, name: str, *, zero: bool = False, integer: bool = False) -> float:
    kinds = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kinds):
        ok = False
    else:
        ok = math.isfinite(value) and (value >= 0 if zero else value > 0)
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = "0 or more" if zero else "more than 0"
        raise ConfigError(f"{name} must be {kind} {bound}; got {value!r}")
    return float(cast(float, value))


@dataclass(frozen=True)
class Faults:
    """Limits and faults to rehearse against. The defaults make a well-behaved API."""

    max_body_bytes: int | None = None
    rate_limit: float | None = None
    error_rate: float = 0.0
    drop_rate: float = 0.0
    latency_ms: int = 0
    transient_400_rate: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_body_bytes is not None:
            check_positive(self.max_body_bytes, "max_body_bytes", integer=True)
        if self.rate_limit is not None:
            check_positive(self.rate_limit, "rate_limit")
        for name in ("error_rate", "drop_rate", "transient_400_rate"):
            check_probability(getattr(self, name), name)
        check_positive(self.latency_ms, "latency_ms", zero=True, integer=True)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ConfigError(f"seed must be an integer; got {self.seed!r}")


class Dice:
    """The seeded draws and the token bucket. One generator, so a seed replays a run."""

    def __init__(self, faults: Faults, clock: Callable[[], float] = time.monotonic) -> None:
        self._random = random.Random(faults.seed)
        self._lock = threading.Lock()
        self._clock = clock
        self._rate = faults.rate_limit or 0.0
        # One second's worth of burst: a client at the limit is never refused.
        self._capacity = max(1.0, self._rate)
        self._tokens = self._capacity
        self._last = clock()

    def roll(self, probability: float) -> bool:
        if probability <= 0:
            return False
        with self._lock:
            return self._random.random() < probability

    def take_token(self) -> float:
        """0 when the request may pass, else the seconds until it would."""
        if not self._rate:
            return 0.0
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self._rate
