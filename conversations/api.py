"""Staff REST API for end users, conversations and API keys."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.filters import SearchFilter
from rest_framework.request import Request
from rest_framework.response import Response

from avatarsite.tenants.config_cache import changed
from avatarsite.tenants.scoping import TenantScopedViewSetMixin

from .models import ApiKey, ChannelIdentity, Context, EndUser, Message


class ChannelIdentitySerializer(serializers.ModelSerializer):
    class Meta:
        model = ChannelIdentity
        fields = ["channel", "external_id", "created_at"]


class EndUserSerializer(serializers.ModelSerializer):
    identities = ChannelIdentitySerializer(many=True, read_only=True)

    class Meta:
        model = EndUser
        fields = ["id", "display_name", "metadata", "identities", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class EndUserViewSet(
    TenantScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """End users are created by the channels they talk through; staff may rename or erase them."""

    queryset = EndUser.objects.prefetch_related("identities")
    serializer_class = EndUserSerializer
    filter_backends = [SearchFilter]
    search_fields = ["display_name", "identities__external_id"]


class MessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = [
            "position",
            "role",
            "content",
            "files",
            "tool_calls",
            "tool_call_id",
            "created_at",
        ]


class ContextSerializer(serializers.ModelSerializer):
    character: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )

    class Meta:
        model = Context
        fields = [
            "id",
            "character",
            "end_user",
            "channel",
            "message_count",
            "created_at",
            "updated_at",
        ]


class ContextViewSet(
    TenantScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Conversations, newest first; filter with `?character=<slug>&end_user=<uuid>`."""

    serializer_class = ContextSerializer

    def get_queryset(self) -> QuerySet[Context]:
        contexts = Context.objects.select_related("character")
        if slug := self.request.query_params.get("character"):
            contexts = contexts.filter(character__slug=slug)
        if end_user := self.request.query_params.get("end_user"):
            try:
                contexts = contexts.filter(end_user_id=uuid.UUID(end_user))
            except ValueError:
                raise serializers.ValidationError({"end_user": "Not a UUID."}) from None
        return contexts

    @extend_schema(responses=MessageSerializer(many=True))
    @action(detail=True)
    def messages(self, request: Request, pk: str | None = None) -> Response:
        page = self.paginate_queryset(self.get_object().messages.order_by("position"))
        return self.get_paginated_response(MessageSerializer(page, many=True).data)


class ApiKeySerializer(serializers.ModelSerializer):
    key = serializers.SerializerMethodField(help_text="The key itself: shown once, on creation.")

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "key",
            "openai_history",
            "requests_per_minute",
            "concurrent_streams",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at", "revoked_at"]

    def get_key(self, obj: ApiKey) -> str | None:
        return self.context.get("raw_key")


class ApiKeyViewSet(
    TenantScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    queryset = ApiKey.objects.all()
    serializer_class = ApiKeySerializer

    def create(self, request: Request, *args: object, **kwargs: object) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key, raw_key = ApiKey.issue(data["name"], self.creation_tenant())
        limits = {f: data[f] for f in ("requests_per_minute", "concurrent_streams") if f in data}
        if limits:
            ApiKey.objects.filter(pk=key.pk).update(**limits)
            changed(key.tenant_id)
            key.refresh_from_db()
        body = ApiKeySerializer(key, context={"raw_key": raw_key}).data
        return Response(body, status=201)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        key = self.get_object()
        if key.revoked_at is None:
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
        return Response(self.get_serializer(key).data)
