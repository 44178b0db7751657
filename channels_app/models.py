"""The registry of live realtime sessions: one row per open WebSocket that has sent `start`
(/ws) or was admitted (/avatar/ws).

Rows are written by the consumers (created then, deleted on disconnect), so staff can
list the sessions of every server process and send them commands through the channel layer.
A consumer renews its row's `seen_at` while the socket is open; the row of a server process
that died (no disconnect ran) stops being renewed and expires after
`LIVE_SESSION_TTL_SECONDS`: it is no longer listed or controllable, and the next `start` on
any process deletes it.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from avatarsite.tenants.models import TenantOwned
from characters.models import Character
from conversations.models import EndUser


def _oldest_alive() -> datetime:
    return timezone.now() - timedelta(seconds=settings.LIVE_SESSION_TTL_SECONDS)


class LiveSessionQuerySet(models.QuerySet["LiveSession"]):
    def alive(self) -> LiveSessionQuerySet:
        """Sessions whose server process renewed them within the TTL."""
        return self.filter(seen_at__gte=_oldest_alive())

    def expired(self) -> LiveSessionQuerySet:
        return self.filter(seen_at__lt=_oldest_alive())


class LiveSession(TenantOwned):
    tenant_parent = "character"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The consumer's own channel-layer channel: unique per connection, in whatever process.
    channel_name = models.CharField(max_length=200, unique=True)
    session_id = models.CharField(max_length=255, db_index=True)
    user_id = models.CharField(max_length=255, blank=True, db_index=True)  # as the client sent
    end_user = models.ForeignKey(EndUser, on_delete=models.CASCADE, related_name="live_sessions")
    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="live_sessions")
    # The socket's protocol: "websocket" (/ws, AIAvatarKit's) or "avatar" (/avatar/ws).
    channel = models.CharField(max_length=32, default="websocket")
    metadata = models.JSONField(default=dict, blank=True)  # the `start` message's metadata
    started_at = models.DateTimeField(auto_now_add=True)
    # Renewed by the consumer every LIVE_SESSION_HEARTBEAT_SECONDS while the socket is open.
    seen_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = LiveSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.session_id} ({self.character})"
