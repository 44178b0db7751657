"""Staff REST API for live realtime sessions: list them, make one speak, interrupt it."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from avatarsite.tenants.scoping import TenantScopedViewSetMixin

from . import live
from .models import LiveSession, LiveSessionQuerySet


def _command(send: Callable[..., None], *args: str) -> Response:
    """202 once the channel layer took the command; 503 while it cannot be reached."""
    try:
        send(*args)
    except live.LiveControlUnavailable as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    return Response(status=status.HTTP_202_ACCEPTED)


class LiveSessionSerializer(serializers.ModelSerializer):
    character: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )

    class Meta:
        model = LiveSession
        fields = [
            "id",
            "session_id",
            "channel",
            "user_id",
            "end_user",
            "character",
            "metadata",
            "started_at",
        ]


class SpeakSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=live.MAX_SPEAK_CHARS, trim_whitespace=True)


class LiveSessionViewSet(
    TenantScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Open /ws and /avatar/ws sessions (`channel`: websocket or avatar) of every server
    process (filter with `?character=<slug>` or `?user_id=`). Commands reach the session
    through the channel layer wherever it runs. The session of a server process that died
    expires (LIVE_SESSION_TTL_SECONDS): not listed, 404."""

    queryset = LiveSession.objects.select_related("character")
    serializer_class = LiveSessionSerializer

    def get_queryset(self) -> QuerySet[LiveSession]:
        sessions = super().get_queryset()  # the staff user's tenants' only
        assert isinstance(sessions, LiveSessionQuerySet)
        sessions = sessions.alive()
        if slug := self.request.query_params.get("character"):
            sessions = sessions.filter(character__slug=slug)
        if user_id := self.request.query_params.get("user_id"):
            sessions = sessions.filter(user_id=user_id)
        return sessions

    @extend_schema(request=SpeakSerializer, responses={202: None, 503: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def speak(self, request: Request, pk: uuid.UUID | None = None) -> Response:
        """Say the text in the character's voice, cutting short what the session is saying."""
        session = self.get_object()
        command = SpeakSerializer(data=request.data)
        command.is_valid(raise_exception=True)
        return _command(
            live.speak_now, live.session_group_of(session), command.validated_data["text"]
        )

    @extend_schema(request=None, responses={202: None, 503: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def interrupt(self, request: Request, pk: uuid.UUID | None = None) -> Response:
        """Stop the reply the session is giving; it ends as an interrupted turn."""
        session = self.get_object()
        return _command(live.interrupt_now, live.session_group_of(session))
