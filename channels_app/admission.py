"""Who a `/ws` or `/avatar/ws` socket speaks for, through the one admission path
(conversations/admission.py): the credential at the handshake (a header, or a subprotocol
browsers can set, or a browser token as `?token=` bound to the page's Origin), counted against
the key's rate and stream limits, the character, and then the end user and session, with the
row staff see the live session by."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from characters.models import Character
from conversations.admission import (
    AdmittedSession,
    Caller,
    admit_session,
    find_character,
    identify,
)
from conversations.rate_limits import StreamSlot
from conversations.transports.base import Rejected, bearer_token

from .database import refresh_connections
from .models import LiveSession

logger = logging.getLogger(__name__)

CHANNEL = "websocket"
SUBPROTOCOL_PREFIX = "Authorization."


def credentials(scope: Mapping[str, Any]) -> tuple[str, str | None]:
    """The API key from `Authorization: Bearer`, else from an `Authorization.<base64(key)>`
    subprotocol (browsers cannot set headers), with the subprotocol to echo."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
    token = bearer_token({"Authorization": headers.get("authorization", "")})
    if token:
        return token, None
    for protocol in scope.get("subprotocols", []):
        if not protocol.startswith(SUBPROTOCOL_PREFIX):
            continue
        encoded = protocol[len(SUBPROTOCOL_PREFIX) :]
        # Padding may be stripped; "/" is not allowed in a subprotocol, so accept URL-safe too.
        encoded = encoded.replace("+", "-").replace("/", "_") + "=" * (-len(encoded) % 4)
        try:
            return base64.urlsafe_b64decode(encoded).decode(), protocol
        except (binascii.Error, ValueError):
            continue
    return "", None


def admit_socket(
    scope: Mapping[str, Any], token: str
) -> tuple[Caller, Character, StreamSlot] | None:
    """Who is calling, the character this socket talks to and the key's stream slot it holds,
    or None when the credential is wrong. A browser token may come as `?token=`. Raises
    `Rejected` for a character the caller cannot reach, or over the key's limits."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
    presented = {
        "Authorization": f"Bearer {token}" if token else "",
        "Origin": headers.get("origin", ""),
        "Host": headers.get("host", ""),
    }
    try:
        caller = identify(presented, (query.get("token") or [""])[0] or None)
    except Rejected as rejected:
        if rejected.status == 401:
            return None
        raise
    slug = (query.get("character") or [""])[0] or headers.get("x-character")
    character = find_character(caller, slug)
    return caller, character, caller.open_stream()


def register(
    channel_name: str,
    caller: Caller,
    character: Character,
    session_id: str,
    user_id: str | None,
    metadata: dict[str, Any],
    *,
    channel: str = CHANNEL,
) -> tuple[AdmittedSession, str]:
    """Bind the socket to its admitted session (who is talking) and the row staff see it by;
    `channel` names the socket's protocol (`/avatar/ws` passes its own)."""
    session = admit_session(
        caller, character, channel=channel, user_id=user_id, session_id=session_id
    )
    user_id = user_id or str(session.end_user.id)
    LiveSession.objects.expired().delete()  # rows of server processes that died
    LiveSession.objects.update_or_create(
        channel_name=channel_name,
        defaults={
            "tenant_id": caller.tenant_id,
            "session_id": session_id,
            "user_id": user_id,
            "end_user": session.end_user,
            "character": character,
            "channel": channel,
            "metadata": metadata,
            "seen_at": timezone.now(),
        },
    )
    return session, user_id


async def keep_alive(channel_name: str) -> None:
    """Renew the socket's live-session row until cancelled (on disconnect): if this server
    process dies, the row expires instead of being listed and commanded forever."""
    while True:
        await asyncio.sleep(settings.LIVE_SESSION_HEARTBEAT_SECONDS)
        try:
            await sync_to_async(_renew)(channel_name)
        except DatabaseError:  # the next beat tries again
            logger.exception("renewing live session %s failed", channel_name)


def _renew(channel_name: str) -> None:
    # Sockets skip Channels' per-message database housekeeping: do it here.
    refresh_connections()
    LiveSession.objects.filter(channel_name=channel_name).update(seen_at=timezone.now())
