"""AdaptiveConcurrency on its own: the slots, the halving on a 429 and the climb back, the
even spacing of starts, and the adaptive limit row by row of its table. A fake clock and a
recording sleep: nothing waits."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from tests.fakes import FakeClock, RecordingSleep
from uploader.errors import ConfigError
from uploader.pacing import (
    AUTO_START,
    GAIN,
    LATENCY_RISE,
    WINDOW_S,
    AdaptiveConcurrency,
)


def test_429_halves_the_limit_once_per_burst_and_it_recovers() -> None:
    async def main() -> None:
        limiter = AdaptiveConcurrency(8, recover_after=3)
        async with limiter as generation:
            pass
        limiter.throttled(generation)
        limiter.throttled(generation)  # same burst: sent before the first halving
        assert limiter.limit == 4
        limiter.throttled()
        limiter.throttled()
        limiter.throttled()
        assert limiter.limit == 1
        for _ in range(2):
            limiter.succeeded()
        assert limiter.limit == 1
        limiter.succeeded()
        assert limiter.limit == 2
        limiter.succeeded()
        limiter.succeeded()
        limiter.throttled()  # a 429 breaks the streak
        limiter.succeeded()
        assert limiter.limit == 1
        for _ in range(100):
            limiter.succeeded()
        assert limiter.limit == 8

    asyncio.run(main())


def test_each_halving_starts_a_new_generation() -> None:
    async def main() -> list[int]:
        limiter = AdaptiveConcurrency(4)
        seen = []
        for _ in range(3):
            async with limiter as generation:
                seen.append(generation)
            limiter.throttled(generation)
        return seen

    assert asyncio.run(main()) == [0, 1, 2]


def test_in_flight_never_exceeds_the_limit_and_waiters_go_in_as_slots_free() -> None:
    async def main() -> tuple[int, list[int]]:
        limiter = AdaptiveConcurrency(3)
        gate = asyncio.Event()
        peak = 0
        order: list[int] = []

        async def request(n: int) -> None:
            nonlocal peak
            async with limiter:
                order.append(n)
                peak = max(peak, limiter.in_flight)
                await gate.wait()

        tasks = [asyncio.create_task(request(n)) for n in range(7)]
        for _ in range(5):
            await asyncio.sleep(0)
        assert order == [0, 1, 2]  # the others wait for a slot
        gate.set()
        await asyncio.gather(*tasks)
        assert limiter.in_flight == 0
        return peak, order

    peak, order = asyncio.run(main())
    assert peak == 3
    assert sorted(order) == list(range(7))


def test_after_a_429_fewer_requests_go_in_until_enough_finish() -> None:
    async def main() -> list[int]:
        limiter = AdaptiveConcurrency(4)
        gate = asyncio.Event()
        admitted: list[int] = []

        async def request(n: int) -> None:
            async with limiter:
                admitted.append(n)
                await gate.wait()

        first = [asyncio.create_task(request(n)) for n in range(4)]
        for _ in range(3):
            await asyncio.sleep(0)
        limiter.throttled()  # 4 -> 2, with 4 in flight
        later = [asyncio.create_task(request(n)) for n in range(4, 6)]
        for _ in range(3):
            await asyncio.sleep(0)
        assert admitted == [0, 1, 2, 3]
        gate.set()
        await asyncio.gather(*first, *later)
        return admitted

    assert asyncio.run(main()) == [0, 1, 2, 3, 4, 5]


def test_rate_spaces_request_starts_evenly() -> None:
    clock = FakeClock()
    sleep = RecordingSleep(clock)

    async def main() -> None:
        limiter = AdaptiveConcurrency(1, rate=4.0, clock=clock, sleep=sleep)
        for _ in range(5):
            async with limiter:
                pass

    asyncio.run(main())
    assert sleep.delays == [0.25, 0.25, 0.25, 0.25]


def test_concurrent_starts_queue_up_one_interval_apart() -> None:
    clock = FakeClock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:  # records, and lets the others run meanwhile
        slept.append(seconds)
        await asyncio.sleep(0)

    async def main() -> None:
        limiter = AdaptiveConcurrency(4, rate=2.0, clock=clock, sleep=sleep)

        async def request() -> None:
            async with limiter:
                pass

        await asyncio.gather(*(request() for _ in range(4)))

    asyncio.run(main())
    assert slept == [0.5, 1.0, 1.5]  # the clock stood still: each waits its turn


def test_a_start_cancelled_while_pacing_gives_its_slot_back() -> None:
    async def cancelled(seconds: float) -> None:
        raise asyncio.CancelledError

    async def main() -> AdaptiveConcurrency:
        limiter = AdaptiveConcurrency(1, rate=1.0, clock=FakeClock(), sleep=cancelled)
        async with limiter:
            pass  # the first start does not wait
        with pytest.raises(asyncio.CancelledError):
            async with limiter:
                raise AssertionError("never entered")
        return limiter

    assert asyncio.run(main()).in_flight == 0


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_concurrency_must_be_a_positive_whole_number(value: Any) -> None:
    with pytest.raises(
        ConfigError, match=f"^concurrency must be a whole number from 1; got {value!r}$"
    ):
        AdaptiveConcurrency(value)


@pytest.mark.parametrize("rate", [0, -2.0, float("inf"), float("nan")])
def test_rate_must_be_above_zero(rate: float) -> None:
    with pytest.raises(
        ConfigError, match=f"^rate must be a number of requests per second above 0; got {rate}$"
    ):
        AdaptiveConcurrency(rate=rate)


# --- the adaptive limit, row by row of the module's table ----------------------------------

# A window's length: past WINDOW_S, and a binary fraction so that the fake clock adds up
# exactly window after window.
SPAN = 0.125
assert SPAN >= WINDOW_S


async def window(
    limiter: AdaptiveConcurrency,
    clock: FakeClock,
    rate: float,
    *,
    latency: float = 0.05,
    slots: int | None = None,
) -> int:
    """One window as the sender reports it: `limit` answers over SPAN seconds delivering
    `rate` events/s, each `latency` seconds long, while `slots` requests are in flight (all
    of them by default). Returns the limit after the window."""
    answers = limiter.limit
    events = round(rate * SPAN / answers)
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(limiter.limit if slots is None else slots):
            await stack.enter_async_context(limiter)
        for i in range(answers):
            if i == answers - 1:
                clock.now += SPAN
            limiter.succeeded(latency, events)
    return limiter.limit


def adaptive(max_concurrency: int = 64, **kwargs: Any) -> tuple[AdaptiveConcurrency, FakeClock]:
    clock = FakeClock()
    return AdaptiveConcurrency(max_concurrency, adaptive=True, clock=clock, **kwargs), clock


def test_adaptive_starts_at_start_within_the_ceiling_and_pinned_at_its_number() -> None:
    assert adaptive()[0].limit == AUTO_START == 4
    assert adaptive(start=16)[0].limit == 16
    limiter, _ = adaptive(2)
    assert (limiter.limit, limiter.start, limiter.highest) == (2, 2, 2)
    assert AdaptiveConcurrency(8, start=2).limit == 8


def test_the_limit_doubles_while_throughput_grows_and_every_slot_is_busy() -> None:
    limiter, clock = adaptive(64)

    async def main() -> list[int]:
        # Each window delivers in proportion to the requests in flight: the API keeps up.
        return [await window(limiter, clock, rate=1000.0 * limiter.limit) for _ in range(6)]

    assert asyncio.run(main()) == [8, 16, 32, 64, 64, 64]
    assert limiter.highest == 64


def test_no_growth_while_slots_stay_idle() -> None:
    limiter, clock = adaptive()

    async def main() -> list[int]:
        idle = [await window(limiter, clock, rate=r, slots=1) for r in (1000.0, 2000.0, 4000.0)]
        busy = await window(limiter, clock, rate=8000.0)  # busy, and 10% above the best
        return [*idle, busy]

    assert asyncio.run(main()) == [4, 4, 4, 8]


def test_the_limit_holds_while_throughput_is_flat_or_grows_less_than_gain() -> None:
    limiter, clock = adaptive()

    async def main() -> list[int]:
        first = await window(limiter, clock, rate=4000.0)
        rates = (4000.0, 3900.0, 4000.0 * (GAIN - 0.05), 4100.0)
        return [first] + [await window(limiter, clock, rate=r) for r in rates]

    assert asyncio.run(main()) == [8, 8, 8, 8, 8]


def test_slower_answers_without_more_throughput_shrink_the_limit_down_to_start() -> None:
    limiter, clock = adaptive()

    async def main() -> list[int]:
        grown = [await window(limiter, clock, rate=r, latency=0.05) for r in (4000.0, 8000.0)]
        slow = LATENCY_RISE * 0.05 * 1.5  # past the rise, with the best throughput held
        return grown + [await window(limiter, clock, rate=8000.0, latency=slow) for _ in range(6)]

    # x SHRINK, floored: 16 -> 12 -> 9 -> 6 -> 4 (not 4.5 -> 4 -> 3: start is the floor)
    assert asyncio.run(main()) == [8, 16, 12, 9, 6, 4, 4, 4]
    assert limiter.highest == 16


def test_a_latency_shrink_stops_at_start_even_from_between() -> None:
    limiter, clock = adaptive(5)  # grows 4 -> 5 (the ceiling); 5 x SHRINK is below 4

    async def main() -> list[int]:
        grown = await window(limiter, clock, rate=4000.0, latency=0.05)
        return [grown, await window(limiter, clock, rate=4000.0, latency=0.5)]

    assert asyncio.run(main()) == [5, 4]


def test_throughput_gained_wins_over_latency_risen() -> None:
    limiter, clock = adaptive()

    async def main() -> list[int]:
        first = await window(limiter, clock, rate=4000.0, latency=0.05)
        return [first, await window(limiter, clock, rate=8000.0, latency=0.5)]

    assert asyncio.run(main()) == [8, 16]


def test_a_window_closes_only_with_both_limit_answers_and_window_s() -> None:
    limiter, clock = adaptive()

    async def main() -> list[int]:
        seen = []
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(4):
                await stack.enter_async_context(limiter)
            for _ in range(4):  # the limit's number of answers in no time: not yet
                limiter.succeeded(0.05, 100)
            seen.append(limiter.limit)
            clock.now += SPAN
            limiter.succeeded(0.05, 100)
            seen.append(limiter.limit)
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(8):
                await stack.enter_async_context(limiter)
            for _ in range(7):  # one answer short of the limit, over a long time: not yet
                clock.now += 1.0
                limiter.succeeded(0.05, 10_000)
            seen.append(limiter.limit)
            limiter.succeeded(0.05, 10_000)
            seen.append(limiter.limit)
        return seen

    assert asyncio.run(main()) == [4, 8, 8, 16]


def test_a_failure_halves_once_per_burst_and_may_go_below_start() -> None:
    limiter, clock = adaptive()

    async def main() -> list[int]:
        for rate in (4000.0, 8000.0):
            await window(limiter, clock, rate=rate)
        seen = [limiter.limit]
        async with limiter as generation:
            pass
        limiter.throttled(generation)
        limiter.throttled(generation)  # sent before the first halving: the same burst
        seen.append(limiter.limit)
        async with limiter as generation:
            pass
        limiter.throttled(generation)  # a new burst
        seen.append(limiter.limit)
        for _ in range(3):
            limiter.throttled()
            seen.append(limiter.limit)
        return seen

    assert asyncio.run(main()) == [16, 8, 4, 2, 1, 1]
    assert (limiter.highest, limiter.generation) == (16, 5)


def test_after_a_burst_of_failures_the_adaptive_limit_climbs_back() -> None:
    # Transient 503s must not cost the rest of the run its concurrency: the slots lost to
    # a halving come back one per run of successes, as in pinned mode, up to where the
    # limit was; from there the windows tune it again.
    limiter, clock = adaptive(recover_after=3)

    async def main() -> list[int]:
        for rate in (4000.0, 8000.0):
            await window(limiter, clock, rate=rate)
        limiter.throttled()
        limiter.throttled()
        seen = [limiter.limit]
        for _ in range(30):  # the same throughput per request as before the failures
            seen.append(await window(limiter, clock, rate=500.0 * limiter.limit))
        return seen

    seen = asyncio.run(main())
    assert seen[0] == 4
    assert seen[-1] == 16
    assert max(seen) == 16  # not past where it was, at this throughput


def test_pinned_mode_ignores_windows_and_recovers_after_its_streak() -> None:
    clock = FakeClock()
    limiter = AdaptiveConcurrency(8, recover_after=4, clock=clock)

    async def main() -> list[int]:
        seen = [await window(limiter, clock, rate=r) for r in (1000.0, 8000.0, 64000.0)]
        seen.append(await window(limiter, clock, rate=64000.0, latency=5.0))
        limiter.throttled()
        seen.append(limiter.limit)
        for _ in range(3):
            limiter.succeeded(0.05, 100)
        seen.append(limiter.limit)
        limiter.succeeded(0.05, 100)
        seen.append(limiter.limit)
        return seen

    assert asyncio.run(main()) == [8, 8, 8, 8, 4, 4, 5]
    assert (limiter.highest, limiter.adaptive) == (8, False)
