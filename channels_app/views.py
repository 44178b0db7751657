"""HTTP beside the realtime socket: `GET /ws/sessions` and the voice client page.

See docs/wire-protocols.md#wssessions."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from characters.models import Character
from conversations.transport import Rejected, authenticate

from .models import LiveSession


@require_GET
def sessions(request: HttpRequest) -> JsonResponse:
    """The most recently started live session of a user, as AIAvatarKit's router answers."""
    try:
        key = authenticate(request.headers)
    except Rejected as rejected:
        return JsonResponse({"detail": rejected.message}, status=rejected.status)
    user_id = request.GET.get("user_id")
    if not user_id:
        detail = [{"loc": ["query", "user_id"], "msg": "Field required", "type": "missing"}]
        return JsonResponse({"detail": detail}, status=422)
    live = (
        LiveSession.objects.filter(tenant_id=key.tenant_id, user_id=user_id)
        .order_by("-started_at")
        .first()
    )
    if live is None:
        return JsonResponse({"session_id": None})
    body: dict[str, Any] = {"session_id": live.session_id, "data": {"metadata": live.metadata}}
    return JsonResponse(body)


@require_GET
def voice_client(request: HttpRequest) -> HttpResponse:
    """The browser voice client: microphone to /ws, the reply's audio and faces back."""
    characters = Character.objects.filter(is_active=True).order_by("-is_default", "name")
    return render(request, "channels_app/voice.html", {"characters": characters})
