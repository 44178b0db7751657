"""Live control of realtime sessions through the channel layer (Redis across processes).

Every session joins three groups: its admitted session (tenant, character, end user and
session id, so another tenant's equal session id is another group), its end user and its
character. Staff tools (admin, REST API) send `live.speak` / `live.interrupt` to a group; the
consumers in whatever process holds those sockets act on it.

When the channel layer cannot take the command (Redis unreachable), `LiveControlUnavailable`
says so: the REST API answers 503, the admin shows an error. Nothing is cached about the
failure, so commands work again as soon as Redis is back.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import BaseChannelLayer, get_channel_layer
from redis.exceptions import RedisError

from conversations.admission import AdmittedSession, session_key

from .models import LiveSession

SPEAK = "live.speak"
INTERRUPT = "live.interrupt"
MAX_SPEAK_CHARS = 2000

logger = logging.getLogger(__name__)


def _name(kind: str, value: str) -> str:
    # Group names allow a restricted alphabet and length; a digest fits any id.
    return f"live.{kind}." + hashlib.sha256(value.encode()).hexdigest()[:40]


def session_group(session_key: str) -> str:
    return _name("session", session_key)


def session_group_of(session: LiveSession) -> str:
    """The group of a live session's row (which names the admitted session's parts)."""
    return session_group(
        session_key(
            session.tenant_id, session.character_id, session.end_user_id, session.session_id
        )
    )


def user_group(end_user_id: uuid.UUID) -> str:
    return f"live.user.{end_user_id.hex}"


def character_group(character_id: int) -> str:
    return f"live.character.{character_id}"


async def join(layer: BaseChannelLayer, channel_name: str, session: AdmittedSession) -> list[str]:
    """Put a socket in its session's three groups; the groups, to `leave` them. With the
    channel layer unreachable the socket works on without live control (none joined)."""
    groups = [
        session_group(session.key),
        user_group(session.end_user.pk),
        character_group(session.character.pk),
    ]
    joined: list[str] = []
    try:
        for group in groups:
            await layer.group_add(group, channel_name)
            joined.append(group)
    except (RedisError, OSError) as exc:
        logger.warning("live control unavailable for %s: %r", channel_name, exc)
    return joined


async def leave(layer: BaseChannelLayer, channel_name: str, groups: list[str]) -> None:
    """Leave the groups; with the channel layer unreachable their entries expire there."""
    try:
        for group in groups:
            await layer.group_discard(group, channel_name)
    except (RedisError, OSError) as exc:
        logger.warning("could not leave live groups of %s: %r", channel_name, exc)


class LiveControlUnavailable(Exception):
    """The channel layer (Redis) did not take the command; nothing was sent."""

    message = "Live control is unavailable: the channel layer (Redis) cannot be reached."


async def _send(group: str, command: dict[str, Any]) -> None:
    layer = get_channel_layer()
    assert layer is not None
    try:
        await layer.group_send(group, command)
    except (RedisError, OSError) as exc:
        logger.warning("live control command %s not sent: %r", command["type"], exc)
        raise LiveControlUnavailable(LiveControlUnavailable.message) from exc


async def speak(group: str, text: str) -> None:
    """Make every session in `group` say `text` in its character's voice."""
    await _send(group, {"type": SPEAK, "text": text})


async def interrupt(group: str) -> None:
    """Cut short what every session in `group` is saying."""
    await _send(group, {"type": INTERRUPT})


speak_now = async_to_sync(speak)
interrupt_now = async_to_sync(interrupt)
