"""How many requests may be in flight, and how fast they may start.

Pinned (`--concurrency N`): at most N in flight; a 429 halves that, and it grows back one
slot per run of successes. Adaptive (the default): the limit starts at AUTO_START and is
tuned from what the answers say, window by window:

    a window (LIMIT answers, and WINDOW_S)       the limit
    ------------------------------------------   --------------------------------------
    delivered GAIN more events/s than any        x GROW, up to AUTO_MAX (only while the
      window before                              senders use every slot)
    no more events/s, answers LATENCY_RISE       x SHRINK, not below AUTO_START (latency
      slower than the fastest window             rose: a queue formed somewhere, and it
                                                 buys nothing)
    anything else                                kept
    a 429, a 5xx, a timeout or a dropped         halved, once per burst; a slot comes back
      connection (any window)                    per RECOVER_AFTER successes in a row, up
                                                 to where the limit was

`rate` caps the starts per second, evenly spaced, in both modes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

from uploader.config import DEFAULT_CONCURRENCY
from uploader.errors import ConfigError

# Successes in a row before a slot lost to a halving comes back: slow enough not to
# re-trigger the limit at once, fast enough to climb back from 1 to 4 in 60 requests.
RECOVER_AFTER = 20
# Adaptive mode starts at DEFAULT_CONCURRENCY, safe for any API, and grows up to AUTO_MAX
# (config.py).
AUTO_START = DEFAULT_CONCURRENCY
# A window lasts at least this long and as many answers as the limit: long enough for a
# rate to mean something, short enough to climb from 4 to 64 within a second at 50 ms.
WINDOW_S = 0.1
# Growth needs this much more throughput than the best window so far (noise is ~5%).
GAIN = 1.10
GROW = 2.0
# Latency this many times the fastest window's, with no throughput gained: shrink.
LATENCY_RISE = 2.0
SHRINK = 0.75


class AdaptiveConcurrency:
    """At most `limit` requests in flight (`async with limiter:`), and at most `rate` per
    second if given; see the module's table for how the limit moves. `max_concurrency` is
    the pinned limit, or the ceiling of an adaptive one."""

    def __init__(
        self,
        max_concurrency: int = DEFAULT_CONCURRENCY,
        *,
        adaptive: bool = False,
        start: int = AUTO_START,
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
        self.adaptive = adaptive
        self.start = min(start, max_concurrency)
        self.limit = self.start if adaptive else max_concurrency
        self.highest = self.limit
        self.rate = rate
        self.recover_after = recover_after
        self.in_flight = 0
        # Bumped at each halving: a 429 to a request sent before the last halving is part of
        # the same burst and must not halve again.
        self.generation = 0
        self._streak = 0
        # Where the limit was before the halvings not yet made up (adaptive mode): without
        # a way back, a few transient 5xx would pin a long run at 1, since growth needs more
        # throughput than the best window, which had all the slots.
        self._regain = 0
        self._clock = clock
        self._sleep = sleep
        self._next_start = -math.inf
        self._free = asyncio.Condition()
        self._window = _Window(clock())
        self._best_rate = 0.0
        self._best_latency = math.inf

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
        """A 429, a 5xx, a timeout or a dropped connection. With the generation `async
        with` returned, only the first failure of a burst halves the limit."""
        self._streak = 0
        if generation is not None and generation != self.generation:
            return
        self._regain = max(self._regain, self.limit)
        self.limit = max(1, self.limit // 2)
        self.generation += 1
        self._window = _Window(self._clock())

    def succeeded(self, latency: float = 0.0, events: int = 0) -> None:
        """A 2xx answer after `latency` seconds, delivering `events`."""
        self._streak += 1
        ceiling = self._regain if self.adaptive else self.max_concurrency
        if self._streak >= self.recover_after and self.limit < ceiling:
            self.limit += 1
            self._streak = 0
            # Waiters are woken on the next release; nobody waits while slots are free.
        if not self.adaptive:
            return
        window = self._window
        window.answers += 1
        window.events += events
        window.latency += latency
        window.busy = window.busy or self.in_flight >= self.limit
        now = self._clock()
        if window.answers >= self.limit and now - window.started >= WINDOW_S:
            self._tune(window, now)
            self._window = _Window(now)

    def _tune(self, window: _Window, now: float) -> None:
        rate = window.events / (now - window.started)
        latency = window.latency / window.answers
        self._best_latency = min(self._best_latency, latency)
        if rate > self._best_rate * GAIN:
            self._best_rate = rate
            if window.busy:
                self.limit = min(self.max_concurrency, math.ceil(self.limit * GROW))
        elif latency > self._best_latency * LATENCY_RISE and self.limit > self.start:
            # Not below where it started: a rise in latency is not a refusal.
            self.limit = max(self.start, math.floor(self.limit * SHRINK))
            self._regain = min(self._regain, self.limit)  # the lost slots are not wanted
        self.highest = max(self.highest, self.limit)


class _Window:
    """Answers since the last tuning."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.answers = 0
        self.events = 0
        self.latency = 0.0
        self.busy = False  # every slot was taken at some answer
