"""Per-key rate limits: requests per minute and concurrent streams (docs/security.md).

Counts live in the `limits` library's storage: Redis when `RATE_LIMIT_STORAGE_URL` (by default
`REDIS_URL`) is set, so every server process shares them, else this process's memory. Requests
per minute use its moving window. Concurrent streams are a counter in the same storage, taken
when a stream opens and given back when it ends; a counter left behind by a killed process
expires `RATE_LIMIT_STREAM_SECONDS` after it last rose from zero.

When the storage fails (Redis down or refusing writes) requests are let through and a warning
is logged: a broken limiter must not take the chat APIs down with it.

The functions are synchronous (the Redis client blocks): call them from admission code running
in a thread, or through `sync_to_async`.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from limits import RateLimitItemPerMinute
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

logger = logging.getLogger(__name__)


def _not_counted(exc: StorageError) -> None:
    logger.warning("Rate limits not counted, the request is let through: %s", exc.storage_error)


class RateLimited(Exception):
    """Over a key's limit: answer 429 with `Retry-After: retry_after`."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class KeyLimits:
    """What one credential may do; 0 means unlimited."""

    key: str  # a stable, unique name of the API key (its prefix)
    requests_per_minute: int
    concurrent_streams: int


@functools.cache
def _storage() -> Storage:
    url = settings.RATE_LIMIT_STORAGE_URL or "memory://"
    options: dict[str, float | str | bool] = {"wrap_exceptions": True}
    if url.startswith(("redis://", "rediss://")):
        options["key_prefix"] = settings.RATE_LIMIT_PREFIX
    storage = storage_from_string(url, **options)
    assert isinstance(storage, Storage)  # a synchronous one: the URL has no "async+" scheme
    return storage


def _limiter() -> MovingWindowRateLimiter:
    return MovingWindowRateLimiter(_storage())


def count_request(limits: KeyLimits) -> None:
    """Count one request against the key; `RateLimited` when it is one too many."""
    if limits.requests_per_minute <= 0:
        return
    item = RateLimitItemPerMinute(limits.requests_per_minute)
    limiter = _limiter()
    try:
        if limiter.hit(item, "requests", limits.key):
            return
        reset_at = limiter.get_window_stats(item, "requests", limits.key).reset_time
    except StorageError as exc:
        _not_counted(exc)
        return
    raise RateLimited(
        f"Rate limit exceeded: {limits.requests_per_minute} requests per minute for this key.",
        retry_after=max(1, math.ceil(reset_at - time.time())),
    )


@dataclass
class StreamSlot:
    """One of a key's concurrent streams, held until `release` (safe to call twice)."""

    counter: str | None
    released: bool = False

    def release(self) -> None:
        if self.counter is None or self.released:
            return
        self.released = True
        storage = _storage()
        try:
            if storage.incr(self.counter, settings.RATE_LIMIT_STREAM_SECONDS, amount=-1) < 0:
                # The counter had expired under a long stream; never let it count below zero.
                storage.clear(self.counter)
        except StorageError as exc:
            _not_counted(exc)


def open_stream(limits: KeyLimits) -> StreamSlot:
    """Take one of the key's stream slots; `RateLimited` when all are in use."""
    if limits.concurrent_streams <= 0:
        return StreamSlot(counter=None)
    counter = f"streams/{limits.key}"
    storage = _storage()
    try:
        taken = storage.incr(counter, settings.RATE_LIMIT_STREAM_SECONDS)
    except StorageError as exc:
        _not_counted(exc)
        return StreamSlot(counter=None)
    if taken <= limits.concurrent_streams:
        return StreamSlot(counter=counter)
    StreamSlot(counter=counter).release()
    raise RateLimited(
        f"Too many concurrent streams: {limits.concurrent_streams} at a time for this key.",
        # A stream's end cannot be foreseen; a second is a fair first wait.
        retry_after=1,
    )
