"""Waiting on a condition, never on the clock: poll until it holds, fail after a bound.

The bound only decides how long a broken test takes to fail; it is generous because two
cores shared by several test runs make slow machines normal.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterator

WAIT_SECONDS = 60.0
_INTERVAL_SECONDS = 0.02


def _polls(what: str, within: float) -> Iterator[None]:
    """One step per check; raises once `within` seconds have passed without success."""
    deadline = time.monotonic() + within
    while True:
        yield
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")


def wait_until(condition: Callable[[], object], what: str, within: float = WAIT_SECONDS) -> None:
    """Block until `condition()` is true (another process or thread makes it so)."""
    for _ in _polls(what, within):
        if condition():
            return
        time.sleep(_INTERVAL_SECONDS)


async def wait_until_async(
    condition: Callable[[], object | Awaitable[object]], what: str, within: float = WAIT_SECONDS
) -> None:
    """`wait_until` on the event loop: `condition` may be a plain or an async check."""
    for _ in _polls(what, within):
        result = condition()
        if await result if inspect.isawaitable(result) else result:
            return
        await asyncio.sleep(_INTERVAL_SECONDS)
