"""Staff REST API for characters."""

from __future__ import annotations

import copy

from rest_framework import serializers, viewsets
from rest_framework.filters import SearchFilter

from avatarsite.tenants.api import unique_in_tenant
from avatarsite.tenants.scoping import TenantScopedViewSetMixin

from .models import Character


class CharacterSerializer(serializers.ModelSerializer):
    class Meta:
        model = Character
        fields = [
            "id",
            "slug",
            "name",
            "persona",
            "default_user_name",
            "language",
            "timezone",
            "llm_provider",
            "llm_model",
            "llm_temperature",
            "llm_allowed_models",
            "llm_max_tokens",
            "llm_base_url",
            "llm_api_key_env",
            "context_timeout_seconds",
            "use_turn_queue",
            "merge_window_seconds",
            "wake_words",
            "wake_timeout_seconds",
            "timestamp_interval_seconds",
            "greeting",
            "apology",
            "face_icons",
            "voice_text_tags",
            "terminal_voice_tag",
            "artifact_catalog",
            "disabled_tools",
            "schedule_hour",
            "diary_hour",
            "news_country",
            "dynamic_tools",
            "openai_history",
            "is_default",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_slug(self, slug: str) -> str:
        return unique_in_tenant(self, "slug", slug)

    def validate(self, attrs: dict) -> dict:
        # The model's cross-field rules (provider and model, voice tags) apply here too.
        candidate = copy.copy(self.instance) if self.instance else Character()
        if candidate.tenant_id is None:  # a new character: its secrets are its tenant's
            candidate.tenant = self.context["view"].creation_tenant()
        for name, value in attrs.items():
            setattr(candidate, name, value)
        candidate.clean()
        return attrs


class CharacterViewSet(TenantScopedViewSetMixin, viewsets.ModelViewSet):
    queryset = Character.objects.all()
    serializer_class = CharacterSerializer
    lookup_field = "slug"
    filter_backends = [SearchFilter]
    search_fields = ["slug", "name"]
