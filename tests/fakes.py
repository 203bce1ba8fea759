"""Time that moves only when the code under test sleeps: backoff and pacing decisions are
asserted without waiting."""

from __future__ import annotations

from dataclasses import dataclass, field


class FakeClock:
    """Monotonic seconds that move only when the code sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class RecordingSleep:
    """An async sleep that records each delay and moves the clock by it."""

    clock: FakeClock
    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.now += seconds
