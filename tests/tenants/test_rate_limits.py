"""Per-key limits counted by the `limits` library, in memory and on Redis."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from conversations import rate_limits
from conversations.rate_limits import KeyLimits, RateLimited, count_request, open_stream
from tests.conftest import require_service


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    if request.param == "redis":
        require_service("Redis (REDIS_URL)", bool(settings.REDIS_URL))
        settings.RATE_LIMIT_STORAGE_URL = settings.REDIS_URL
        settings.RATE_LIMIT_PREFIX = f"tests-{uuid.uuid4().hex}"
    else:
        settings.RATE_LIMIT_STORAGE_URL = ""
    rate_limits._storage.cache_clear()
    yield request.param
    rate_limits._storage.cache_clear()


def limits(requests: int = 0, streams: int = 0) -> KeyLimits:
    # A fresh key name per test: counts never leak between tests sharing one storage.
    return KeyLimits(
        key=f"ak_{uuid.uuid4().hex[:9]}", requests_per_minute=requests, concurrent_streams=streams
    )


def test_requests_over_the_minute_limit_are_refused_with_a_wait(storage: str) -> None:
    key = limits(requests=3)
    for _ in range(3):
        count_request(key)

    with pytest.raises(RateLimited) as refused:
        count_request(key)

    assert 1 <= refused.value.retry_after <= 60
    assert "3 requests per minute" in refused.value.message


def test_keys_are_counted_apart(storage: str) -> None:
    first, second = limits(requests=1), limits(requests=1)
    count_request(first)

    count_request(second)  # not refused: the first key's request is not the second's

    with pytest.raises(RateLimited):
        count_request(first)


def test_zero_means_unlimited(storage: str) -> None:
    key = limits()
    for _ in range(100):
        count_request(key)
    slots = [open_stream(key) for _ in range(100)]
    assert all(slot.counter is None for slot in slots)


def test_a_released_stream_frees_its_slot(storage: str) -> None:
    key = limits(streams=2)
    first, _second = open_stream(key), open_stream(key)
    with pytest.raises(RateLimited) as refused:
        open_stream(key)
    assert refused.value.retry_after == 1

    first.release()
    first.release()  # twice is harmless: one slot comes back, not two

    third = open_stream(key)
    with pytest.raises(RateLimited):
        open_stream(key)
    third.release()


def test_a_refused_stream_takes_no_slot(storage: str) -> None:
    key = limits(streams=1)
    held = open_stream(key)
    for _ in range(5):
        with pytest.raises(RateLimited):
            open_stream(key)

    held.release()

    open_stream(key)  # the refusals left nothing behind


def test_a_failing_storage_lets_requests_through(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A broken limiter must not take the chat APIs down: count nothing, say so."""
    settings.RATE_LIMIT_STORAGE_URL = "redis://127.0.0.1:9/0"  # nothing listens on port 9
    rate_limits._storage.cache_clear()
    # An in-process Celery worker started by an earlier test sets the root logger to ERROR.
    caplog.set_level(logging.WARNING, logger=rate_limits.__name__)
    key = limits(requests=1, streams=1)
    try:
        for _ in range(3):
            count_request(key)
        slots = [open_stream(key) for _ in range(3)]
        for slot in slots:
            slot.release()
    finally:
        rate_limits._storage.cache_clear()

    assert "Rate limits not counted" in caplog.text
