"""Staff REST API for end users, conversations and API keys; characters' shared context,
guardrails and MCP servers."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.filters import SearchFilter
from rest_framework.request import Request
from rest_framework.response import Response

from avatarsite.tenants.api import InTenant, clean_as_model, unique_in_tenant
from avatarsite.tenants.config_cache import changed
from avatarsite.tenants.scoping import TenantScopedViewSetMixin
from characters.models import Character

from .models import (
    ApiKey,
    ChannelIdentity,
    Context,
    EndUser,
    Guardrail,
    McpServer,
    Message,
    SharedMessage,
)
from .shared_context import share


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

    queryset = Context.objects.select_related("character")
    serializer_class = ContextSerializer

    def get_queryset(self) -> QuerySet[Context]:
        # Through the mixin: the staff user's tenants' only (it once listed every tenant's).
        contexts = super().get_queryset()
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


class SharedMessageSerializer(serializers.ModelSerializer):
    character = InTenant(slug_field="slug", queryset=Character.objects.all())

    class Meta:
        model = SharedMessage
        fields = ["id", "character", "content", "source", "created_at"]
        read_only_fields = ["id", "source", "created_at"]

    def create(self, validated_data: dict[str, Any]) -> SharedMessage:
        # Through `share`, so the character's retention applies as it does for tools.
        return share(validated_data["character"], validated_data["content"])


class SharedMessageViewSet(
    TenantScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Characters' shared context (docs/turn.md#shared-context), newest first; filter with
    `?character=<slug>`. What is added here every conversation of the character sees."""

    queryset = SharedMessage.objects.select_related("character")
    serializer_class = SharedMessageSerializer

    def get_queryset(self) -> QuerySet[SharedMessage]:
        messages = super().get_queryset()  # the staff user's tenants' only
        if slug := self.request.query_params.get("character"):
            messages = messages.filter(character__slug=slug)
        return messages


class GuardrailSerializer(serializers.ModelSerializer):
    character = InTenant(
        slug_field="slug",
        queryset=Character.objects.all(),
        required=False,
        allow_null=True,
        help_text="Slug of the character it checks; null: every character of the tenant.",
    )

    class Meta:
        model = Guardrail
        fields = [
            "id",
            "name",
            "character",
            "applies_to",
            "kind",
            "pattern",
            "question",
            "class_path",
            "action",
            "message",
            "is_active",
        ]
        read_only_fields = ["id"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        clean_as_model(self, attrs)
        return attrs


class GuardrailViewSet(TenantScopedViewSetMixin, viewsets.ModelViewSet):
    """Checks on what users ask and characters answer (docs/turn.md#guardrails)."""

    queryset = Guardrail.objects.select_related("character")
    serializer_class = GuardrailSerializer


class McpServerSerializer(serializers.ModelSerializer):
    character = InTenant(
        slug_field="slug",
        queryset=Character.objects.all(),
        required=False,
        allow_null=True,
        help_text="Slug of the character it serves; null: every character of the tenant.",
    )

    class Meta:
        model = McpServer
        fields = [
            "id",
            "name",
            "transport",
            "command",
            "args",
            "environment",
            "url",
            "headers",
            "character",
            "enabled",
            "dynamic_tools",
            "instruction",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_name(self, name: str) -> str:
        return unique_in_tenant(self, "name", name)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A stdio server runs a command on this server: superusers only (docs/security.md).
        transport = attrs.get("transport", getattr(self.instance, "transport", None))
        if transport == McpServer.Transport.STDIO and not self.context["request"].user.is_superuser:
            raise PermissionDenied("Only superusers may configure stdio MCP servers.")
        clean_as_model(self, attrs)
        return attrs


class McpServerViewSet(TenantScopedViewSetMixin, viewsets.ModelViewSet):
    """MCP servers whose tools characters may call (docs/turn.md#mcp-servers). Secrets never
    pass here: headers and the environment name environment variables or provider secrets."""

    queryset = McpServer.objects.select_related("character")
    serializer_class = McpServerSerializer

    def get_queryset(self) -> QuerySet[McpServer]:
        servers = super().get_queryset()
        if not self.request.user.is_superuser:  # as in the admin: stdio ones are not theirs
            servers = servers.exclude(transport=McpServer.Transport.STDIO)
        return servers
