"""How many requests may be in flight, and how fast they may start.

A 429 halves the requests in flight; they grow back one slot per run of successes. `rate`
caps the starts per second, evenly spaced.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from uploader.config import DEFAULT_CONCURRENCY
from uploader.errors import ConfigError

# Successes in a row before a slot lost to a 429 comes back: slow enough not to re-trigger
# the limit at once, fast enough to climb back from 1 to 4 in 60 requests.
RECOVER_AFTER = 20


class AdaptiveConcurrency:
    """At most `limit` requests in flight (`async with limiter:`), and at most `rate` per
    second if given. A 429 halves the limit; it grows back one slot per `recover_after`
    successes in a row, up to `max_concurrency`."""

    def __init__(
        self,
        max_concurrency: int = DEFAULT_CONCURRENCY,
        *,
        rate: float | None = None,
        recover_after: int = RECOVER_AFTER,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or (max_concurrency < 1)
        ):
            raise ConfigError(f"concurrency must be a whole number from 1; got {max_concurrency!r}")
        if rate is not None and not (math.isfinite(rate) and rate > 0):
            raise ConfigError(f"rate must be a number of requests per second above 0; got {rate}")
        self.max_concurrency = max_concurrency
        self.limit = max_concurrency
        self.rate = rate
        self.recover_after = recover_after
        self.in_flight = 0
        # Bumped at each halving: a 429 to a request sent before the last halving is part of
        # the same burst and must not halve again.
        self.generation = 0
        self._streak = 0
        self._clock = clock
        self._sleep = sleep
        self._next_start = -math.inf
        self._free = asyncio.Condition()

    async def __aenter__(self) -> int:
        async with self._free:
            await self._free.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        try:
            await self._pace()
        except BaseException:
            await self._release()
            raise
        return self.generation

    async def __aexit__(self, *exc: object) -> None:
        await self._release()

    async def _release(self) -> None:
        async with self._free:
            self.in_flight -= 1
            self._free.notify_all()

    async def _pace(self) -> None:
        # Even spacing (no burst): the next start is reserved before waiting, so concurrent
        # callers queue up one interval apart.
        if self.rate is None:
            return
        now = self._clock()
        start = max(now, self._next_start)
        self._next_start = start + 1.0 / self.rate
        if start > now:
            await self._sleep(start - now)

    def throttled(self, generation: int | None = None) -> None:
        """A 429. With the generation `async with` returned, only the first 429 of a burst
        halves the limit."""
        self._streak = 0
        if generation is not None and generation != self.generation:
            return
        self.limit = max(1, self.limit // 2)
        self.generation += 1

    def succeeded(self) -> None:
        self._streak += 1
        if self._streak >= self.recover_after and self.limit < self.max_concurrency:
            self.limit += 1
            self._streak = 0
            # Waiters are woken on the next release; nobody waits while slots are free.
