"""One task's 429 slows every task of the job down.

Each task limits its own requests in flight (pacing.AdaptiveConcurrency): a 429, a 5xx, a
timeout or a dropped connection halves its limit. When the API pushes back on the whole
job, the other tasks should slow down too, not each wait for a refusal of its own. So a
task whose limit was halved writes a mark in the state folder (`throttle/JOB/`), and every
task looks there at most once a POLL_S: marks of other tasks it has not seen yet halve its
own limit, once per look. A task that starts ignores the marks already there (what slowed
the job down before it started is not news). The marks are empty files; on object storage
a look is one listing a second per task.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from uploader.pacing import AdaptiveConcurrency
from uploader.spark.state import StateDir

# How often a task looks for the marks of the others, at most.
POLL_S = 1.0
MARK = ".mark"


class SharedThrottle(AdaptiveConcurrency):
    """AdaptiveConcurrency whose halvings are told to, and taken from, the job's other
    tasks through the state folder. `me` names this task's attempt ("3.0")."""

    def __init__(self, state: StateDir, job: str, me: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._state = state
        self._folder = f"{state.root}/throttle/{job}"
        self._me = me
        self._marks = 0
        self._seen: set[str] | None = None  # None until the first look
        self._next_look = -1.0
        self.slowed_by_others = 0

    def throttled(self, generation: int | None = None) -> None:
        before = self.generation
        super().throttled(generation)
        if self.generation != before:  # halved: tell the others
            self._marks += 1
            path = f"{self._folder}/{self._me}-{self._marks}{MARK}"
            with contextlib.suppress(Exception):  # best effort: this task slowed down anyway
                self._state.write(path, b"")

    async def __aenter__(self) -> int:
        now = self._clock()
        if now >= self._next_look:
            self._next_look = now + POLL_S
            if await asyncio.to_thread(self._news):
                self.slowed_by_others += 1
                super().throttled(None)
        return await super().__aenter__()

    def _news(self) -> bool:
        """Whether other tasks were slowed down since the last look."""
        try:
            marks = {path.rsplit("/", 1)[-1] for path in self._state.files(self._folder, MARK)}
        except Exception:  # the folder unreachable a moment: look again later
            return False
        mine = f"{self._me}-"
        others = {m for m in marks if not m.startswith(mine)}
        if self._seen is None:  # the first look: what is there is old news
            self._seen = others
            return False
        new = others - self._seen
        self._seen |= new
        return bool(new)
