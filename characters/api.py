"""Staff REST API for characters."""

from __future__ import annotations

from rest_framework import serializers, viewsets
from rest_framework.filters import SearchFilter

from avatarsite.tenants.api import clean_as_model, serializer_tenant, unique_in_tenant
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
            "invoke_timeout_seconds",
            "shared_context_size",
            "shared_context_max_age_hours",
            "on_error_hook",
            "response_hook",
            "on_finish_hook",
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
            "record_audio",
            "is_default",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_slug(self, slug: str) -> str:
        return unique_in_tenant(self, "slug", slug)

    def validate_is_default(self, is_default: bool) -> bool:
        """One default character per tenant (the model's constraint): a second one is a 400,
        as in the admin, not an IntegrityError at the database."""
        if is_default:
            defaults = Character.objects.filter(tenant=serializer_tenant(self), is_default=True)
            if self.instance is not None:
                defaults = defaults.exclude(pk=self.instance.pk)
            if defaults.exists():
                raise serializers.ValidationError(
                    "This tenant already has a default character: unset its is_default first."
                )
        return is_default

    def validate(self, attrs: dict) -> dict:
        # The model's cross-field rules (provider and model, voice tags, hooks) apply here too.
        clean_as_model(self, attrs)
        return attrs


class CharacterViewSet(TenantScopedViewSetMixin, viewsets.ModelViewSet):
    queryset = Character.objects.all()
    serializer_class = CharacterSerializer
    lookup_field = "slug"
    filter_backends = [SearchFilter]
    search_fields = ["slug", "name"]
