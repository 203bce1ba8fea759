"""A task's 429 slows the job's other tasks down through the state folder (spark/throttle.py):
real files, two limiters as two tasks would hold them, a clock the test moves."""

from __future__ import annotations

import asyncio

from uploader.spark.state import StateDir
from uploader.spark.throttle import POLL_S, SharedThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def task(state: StateDir, me: str, clock: Clock) -> SharedThrottle:
    return SharedThrottle(state, "job1", me, 16, adaptive=False, clock=clock)


async def request(limiter: SharedThrottle) -> None:
    async with limiter:
        pass


def test_a_halving_in_one_task_halves_the_others_once_at_their_next_look(tmp_path):
    state, clock = StateDir(str(tmp_path / "state")), Clock()
    first, second = task(state, "0.0", clock), task(state, "1.0", clock)
    asyncio.run(request(first))
    asyncio.run(request(second))  # both have looked once: nothing yet
    first.throttled(first.generation)  # a 429 in the first task
    assert (first.limit, second.limit) == (8, 16)
    asyncio.run(request(second))  # too soon after its last look
    assert second.limit == 16
    clock.now += POLL_S
    asyncio.run(request(second))
    assert second.limit == 8 and second.slowed_by_others == 1
    clock.now += POLL_S
    asyncio.run(request(second))  # the same mark again: no news
    asyncio.run(request(first))  # its own mark is not news to the first task either
    assert (first.limit, second.limit) == (8, 8)
    assert (first.slowed_by_others, second.slowed_by_others) == (0, 1)
    # The second task's own halving (for the news) is not told on: no echo back.
    clock.now += POLL_S
    asyncio.run(request(first))
    assert first.limit == 8


def test_a_task_that_starts_later_ignores_what_slowed_the_job_before(tmp_path):
    state, clock = StateDir(str(tmp_path / "state")), Clock()
    first = task(state, "0.0", clock)
    first.throttled(first.generation)
    late = task(state, "1.0", clock)
    asyncio.run(request(late))
    clock.now += POLL_S
    asyncio.run(request(late))
    assert late.limit == 16 and late.slowed_by_others == 0
    first.throttled(first.generation)  # news after it started
    clock.now += POLL_S
    asyncio.run(request(late))
    assert late.limit == 8 and late.slowed_by_others == 1
