"""One event loop kept per thread, for synchronous code that runs coroutines: Celery tasks
(a LINE turn, a day of character life) and management commands.

`asyncio.run` or `async_to_sync` would make a new loop per call, and with it new provider
clients (they are kept per loop: an SDK client, its HTTP connection pool and TLS context), so
every task would pay for a fresh client and fresh connections. On a kept loop the clients and
their connections carry over from one task to the next.

Work such a coroutine hands to `sync_to_async` runs on asgiref's thread for thread-sensitive
code, not on the calling thread, so Django's connection housekeeping there is the caller's to
do (`conversations.line.handling` does it before each turn).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

Result = TypeVar("Result")

_thread_state = threading.local()


def run(coroutine: Coroutine[Any, Any, Result]) -> Result:
    """Run a coroutine to its end on this thread's own event loop."""
    loop = getattr(_thread_state, "loop", None)
    if loop is None or loop.is_closed():
        loop = _thread_state.loop = asyncio.new_event_loop()
    return loop.run_until_complete(coroutine)
