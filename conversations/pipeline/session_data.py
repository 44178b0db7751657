"""What a client sets once for its session and every later turn keeps, whatever transport
carries it (AIAvatarKit keeps `tts_speed` in its session data): the speech speed.

Kept in Django's cache under the admitted session's key, so a tenant's session never sees
another's; with REDIS_URL set the cache is Redis, shared by every server process. While Redis
is unreachable turns go on at the default speed and a speed set meanwhile is not kept
(docs/operations.md#faults): a setting is not worth a turn.
"""

from __future__ import annotations

import hashlib
import logging

from django.core.cache import cache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

SESSION_TTL_SECONDS = 24 * 3600
MIN_SPEED, MAX_SPEED = 0.25, 4.0


def _key(session_key: str) -> str:
    return "session-speed:" + hashlib.sha256(session_key.encode()).hexdigest()


def valid_speed(value: object) -> float | None:
    """A speed from a client or a tag, or None when it is not a number in range."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        speed = float(value)
    except ValueError:
        return None
    return speed if MIN_SPEED <= speed <= MAX_SPEED else None


async def session_speed(session_key: str) -> float | None:
    try:
        speed = await cache.aget(_key(session_key))
    except RedisError as exc:
        logger.warning("session speed unknown, the cache is unreachable: %s", exc)
        return None
    return valid_speed(speed)


async def remember_speed(session_key: str, speed: float) -> None:
    try:
        await cache.aset(_key(session_key), speed, SESSION_TTL_SECONDS)
    except RedisError as exc:
        logger.warning("session speed not kept, the cache is unreachable: %s", exc)
