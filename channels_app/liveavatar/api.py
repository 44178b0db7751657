"""Staff REST API for Live Avatar agents: configure them, switch them on and off (`enabled`),
and read what the worker reports, with the browser's RTC room and token of the current
session."""

from __future__ import annotations

import copy
from typing import Any

from rest_framework import serializers, viewsets

from avatarsite.tenants.api import InTenant
from avatarsite.tenants.scoping import TenantScopedViewSetMixin
from characters.models import Character

from .models import LiveAvatarAgent


class LiveAvatarAgentSerializer(serializers.ModelSerializer):
    character = InTenant(slug_field="slug", queryset=Character.objects.all())
    user_token = serializers.CharField(
        read_only=True, help_text="The browser's token for the RTC room of the current session."
    )

    class Meta:
        model = LiveAvatarAgent
        fields = [
            "id",
            "character",
            "base_url",
            "api_key_env",
            "avatar_id",
            "voice_id",
            "asr_provider",
            "tts_provider",
            "tts_sample_rate",
            "sandbox",
            "idle_prompt",
            "enabled",
            "state",
            "session_id",
            "sfu_url",
            "user_token",
            "last_error",
            "reported_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "state",
            "session_id",
            "sfu_url",
            "last_error",
            "reported_at",
            "created_at",
            "updated_at",
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The model's rules (the key is one of the tenant's own secrets) apply here too.
        candidate = copy.copy(self.instance) if self.instance else LiveAvatarAgent()
        for name, value in attrs.items():
            setattr(candidate, name, value)
        candidate.clean()
        return attrs


class LiveAvatarAgentViewSet(TenantScopedViewSetMixin, viewsets.ModelViewSet):
    """Characters as agents of Live Avatar platforms; PATCH `enabled` starts or stops one (the
    worker, `manage.py run_liveavatar_agents`, follows within LIVEAVATAR_POLL_SECONDS)."""

    queryset = LiveAvatarAgent.objects.select_related("character")
    serializer_class = LiveAvatarAgentSerializer

    def perform_create(self, serializer: serializers.BaseSerializer[Any]) -> None:
        serializer.save(tenant=self.creation_tenant())
