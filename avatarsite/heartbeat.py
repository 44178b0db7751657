"""A lease kept alive while its holder works: a daemon thread renews it at a steady interval
until the block ends. A killed process stops renewing, so its lease runs out and the work can
be handed on soon, even when one step (an LLM call) takes longer than the lease itself."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import connections

logger = logging.getLogger(__name__)


@contextmanager
def heartbeat(renew: Callable[[], object], every: float) -> Iterator[None]:
    """Call `renew()` every `every` seconds while the block runs (and never after it).

    Not inside a transaction: the beat's own connection could not see the rows the block has
    not committed, and would wait on the block's locks while the block waits for the beat."""
    if connections["default"].in_atomic_block:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(every):
                try:
                    renew()
                except Exception:  # the next beat tries again; the lease may run out meanwhile
                    logger.exception("renewing a lease failed")
        finally:
            connections.close_all()  # this thread's own database connections

    thread = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
