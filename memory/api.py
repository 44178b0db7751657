"""Staff REST API over memories: list (by character, end user, kind), read, correct, pin,
delete; tenant-scoped like every staff viewset."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from rest_framework import mixins, serializers, viewsets

from avatarsite.tenants.scoping import TenantScopedViewSetMixin

from .models import MemoryItem


class MemoryItemSerializer(serializers.ModelSerializer):
    character: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )

    class Meta:
        model = MemoryItem
        fields = [
            "id",
            "kind",
            "character",
            "end_user",
            "key",
            "subject",
            "content",
            "reply",
            "diary_date",
            "occurred_at",
            "pinned",
            "session_id",
            "channel",
            "source",
            "index_state",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [f for f in fields if f not in ("subject", "content", "reply", "pinned")]

    def update(self, instance: MemoryItem, validated_data: dict[str, object]) -> MemoryItem:
        if {"content", "reply", "subject"} & validated_data.keys():
            instance.index_state = MemoryItem.Index.PENDING
        return super().update(instance, validated_data)


class MemoryItemViewSet(
    TenantScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Memories, newest first; filter with `?character=<slug>&end_user=<uuid>&kind=<kind>`."""

    queryset = MemoryItem.objects.select_related("character")
    serializer_class = MemoryItemSerializer

    def get_queryset(self) -> QuerySet[MemoryItem]:
        items = super().get_queryset()  # the staff user's tenants' only
        params = self.request.query_params
        if slug := params.get("character"):
            items = items.filter(character__slug=slug)
        if kind := params.get("kind"):
            if kind not in MemoryItem.Kind.values:
                raise serializers.ValidationError({"kind": f"One of {MemoryItem.Kind.values}."})
            items = items.filter(kind=kind)
        if end_user := params.get("end_user"):
            try:
                items = items.filter(end_user_id=uuid.UUID(end_user))
            except ValueError:
                raise serializers.ValidationError({"end_user": "Not a UUID."}) from None
        return items
