from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from uploader.sandbox import Sandbox


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Start a sandbox with the given options; it is stopped after the test."""
    started: list[Sandbox] = []

    def make(**options: Any) -> Sandbox:
        sb = Sandbox(**options).start()
        started.append(sb)
        return sb

    yield make
    for sb in started:
        sb.stop()


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[Sandbox]:
    with Sandbox() as sb:
        yield sb


@pytest.fixture
def sandbox(shared_sandbox: Sandbox) -> Sandbox:
    """A well-behaved sandbox, emptied for each test."""
    shared_sandbox.reset()
    return shared_sandbox


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    # Shared: building an httpx client costs ~50 ms (its TLS context), a request ~1 ms.
    with httpx.Client(timeout=10) as c:
        yield c
