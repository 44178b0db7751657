"""The registry of live realtime sessions: one row per open WebSocket that has sent `start`
(/ws) or was admitted (/avatar/ws).

Rows are written by the consumers (created then, deleted on disconnect), so staff can
list the sessions of every server process and send them commands through the channel layer.
"""

from __future__ import annotations

import uuid

from django.db import models

from avatarsite.tenants.models import TenantOwned
from characters.models import Character
from conversations.models import EndUser


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

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.session_id} ({self.character})"
