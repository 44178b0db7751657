"""The Redis channel layer, made to outlive a Redis outage.

A consumer waits on the layer for commands addressed to its socket (live control) alongside
its client's frames; channels-redis raises from that wait when Redis is unreachable, which
would end the socket although the conversation itself needs no Redis. Here the wait retries
with a growing pause (up to `MAX_PAUSE_SECONDS`) until Redis answers again, so sockets keep
talking through an outage and receive commands again once it is over.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels_redis.core import RedisChannelLayer  # type: ignore[import-untyped]
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

FIRST_PAUSE_SECONDS = 0.5
MAX_PAUSE_SECONDS = 10.0


class OutageTolerantRedisChannelLayer(RedisChannelLayer):
    async def receive(self, channel: str) -> dict[str, Any]:
        pause = FIRST_PAUSE_SECONDS
        while True:
            try:
                message: dict[str, Any] = await super().receive(channel)
                return message
            except (RedisError, OSError) as exc:
                logger.warning("channel layer unreachable, retrying in %.1f s: %r", pause, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE_SECONDS)
