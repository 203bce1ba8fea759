"""AdaptiveConcurrency on its own: the slots, the halving on a 429 and the climb back, and
the even spacing of starts. A fake clock and a recording sleep: nothing waits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.fakes import FakeClock, RecordingSleep
from uploader.errors import ConfigError
from uploader.pacing import AdaptiveConcurrency


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
