"""Staff REST API for characters' voices: how each speaks and hears (docs/speech.md)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, viewsets

from avatarsite.tenants.api import InTenant, clean_as_model
from avatarsite.tenants.scoping import TenantScopedViewSetMixin
from characters.models import Character

from .models import VoiceSettings


class VoiceSettingsSerializer(serializers.ModelSerializer):
    character = InTenant(slug_field="slug", queryset=Character.objects.all())

    class Meta:
        model = VoiceSettings
        exclude = ["tenant"]

    def validate_character(self, character: Character) -> Character:
        others = VoiceSettings.objects.filter(character=character)
        if self.instance is not None:
            others = others.exclude(pk=self.instance.pk)
        if others.exists():
            raise serializers.ValidationError("This character already has voice settings.")
        return character

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        clean_as_model(self, attrs)  # providers' secrets and STT hooks, as the admin checks
        return attrs


class VoiceSettingsViewSet(TenantScopedViewSetMixin, viewsets.ModelViewSet):
    """One per character at most; a character without one speaks and hears with the server's
    defaults. Filter with `?character=<slug>`."""

    queryset = VoiceSettings.objects.select_related("character")
    serializer_class = VoiceSettingsSerializer

    def get_queryset(self) -> Any:
        voices = super().get_queryset()  # the staff user's tenants' only
        if slug := self.request.query_params.get("character"):
            voices = voices.filter(character__slug=slug)
        return voices
