"""HTTP beside the realtime socket: `GET /ws/sessions` and the voice client page.

See docs/wire-protocols.md#wssessions."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from avatarsite.tenants.models import DEFAULT_TENANT_SLUG
from characters.models import Character
from conversations.admission import (
    identify,
    identify_page,
    known_end_user,
    reachable_characters,
)
from conversations.transports.base import Rejected

from .admission import CHANNEL
from .models import LiveSession


@require_GET
def sessions(request: HttpRequest) -> JsonResponse:
    """The most recently started live session of a user, as AIAvatarKit's router answers."""
    try:
        caller = identify(request.headers)
        user_id = caller.user(request.GET.get("user_id"))
    except Rejected as rejected:
        return JsonResponse(
            {"detail": rejected.message}, status=rejected.status, headers=rejected.headers()
        )
    if not user_id:
        detail = [{"loc": ["query", "user_id"], "msg": "Field required", "type": "missing"}]
        return JsonResponse({"detail": detail}, status=422)
    # Another tenant's user, or a session with a character the credential does not reach, is
    # as absent as one that never existed.
    end_user = known_end_user(caller, CHANNEL, user_id)
    live = (
        LiveSession.objects.alive()
        .filter(end_user=end_user, character__in=reachable_characters(caller))
        .order_by("-started_at")
        .first()
        if end_user is not None
        else None
    )
    if live is None:
        return JsonResponse({"session_id": None})
    body: dict[str, Any] = {"session_id": live.session_id, "data": {"metadata": live.metadata}}
    return JsonResponse(body)


@require_GET
def voice_client(request: HttpRequest) -> HttpResponse:
    """The browser voice client: microphone to /ws, the reply's audio and faces back.

    With `?token=` (a browser token) it talks to the token's character only and may be framed
    only by pages of the token's origin (docs/security.md)."""
    raw = request.GET.get("token")
    if not raw:
        # A public page: only the default tenant's characters, never another operator's.
        characters = Character.objects.filter(
            tenant__slug=DEFAULT_TENANT_SLUG, is_active=True
        ).order_by("-is_default", "name")
        return render(request, "channels_app/voice.html", {"characters": characters})
    try:
        caller = identify_page(raw)
    except Rejected as rejected:
        return JsonResponse(
            {"detail": rejected.message}, status=rejected.status, headers=rejected.headers()
        )
    context = {"characters": reachable_characters(caller), "token": raw}
    response = render(request, "channels_app/voice.html", context)
    response["Content-Security-Policy"] = f"frame-ancestors 'self' {caller.origin}"
    response.xframe_options_exempt = True
    response["Referrer-Policy"] = "no-referrer"  # the token is in this page's URL
    return response
