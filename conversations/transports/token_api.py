"""`POST /api/tokens`: a tenant's server trades its API key for a browser token.

Body: `{"origin": "https://shop.example.com", "character": "mia", "user_id": "u1",
"ttl_seconds": 300}`; only `origin` is required (one of the tenant's allowed origins). Answers
`{"token", "expires_at", "expires_in", "origin", "character", "user_id"}` with 201, or
`{"detail": ...}` with 400, 401, 404 or 429 (docs/security.md).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from avatarsite.tenants.models import TenantOrigin

from ..admission import find_character, identify
from ..browser_tokens import BrowserToken, sign
from ..models import ApiKey
from .base import Rejected, problems, read_json


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    origin: str = Field(min_length=1, max_length=200)
    character: str | None = Field(default=None, max_length=50)
    user_id: str | None = Field(default=None, min_length=1, max_length=255)
    ttl_seconds: int | None = Field(default=None, ge=1)


def _mint(headers: Mapping[str, str], data: Any) -> dict[str, Any]:
    caller = identify(headers, browser=False)  # a token cannot mint tokens
    assert caller.api_key_id is not None  # an API key's caller
    if isinstance(data, Rejected):
        raise data
    try:
        wanted = TokenRequest.model_validate(data)
    except ValidationError as exc:
        raise Rejected(400, problems(exc), code="invalid") from None
    if not TenantOrigin.objects.filter(tenant_id=caller.tenant_id, origin=wanted.origin).exists():
        raise Rejected(
            400,
            f"{wanted.origin} is not one of this tenant's allowed origins (admin: Allowed "
            "origins; an origin is scheme://host[:port], e.g. https://shop.example.com).",
            code="origin_not_allowed",
        )
    character = find_character(caller, wanted.character)
    ttl = min(
        wanted.ttl_seconds or settings.BROWSER_TOKEN_TTL_SECONDS,
        settings.BROWSER_TOKEN_MAX_TTL_SECONDS,
    )
    token = BrowserToken(
        key_prefix=ApiKey.objects.values_list("prefix", flat=True).get(pk=caller.api_key_id),
        character_id=character.pk,
        user_id=wanted.user_id,
        origin=wanted.origin,
        expires_at=int(time.time()) + ttl,
    )
    return {
        "token": sign(token),
        "expires_at": datetime.fromtimestamp(token.expires_at, UTC).isoformat(),
        "expires_in": ttl,
        "origin": token.origin,
        "character": character.slug,
        "user_id": token.user_id,
    }


@csrf_exempt
@require_POST
async def tokens(request: HttpRequest) -> JsonResponse:
    try:
        data: Any = read_json(request)
    except Rejected as rejected:
        data = Rejected(400, rejected.message, code=rejected.code)
    try:
        minted = await sync_to_async(_mint)(request.headers, data)
    except Rejected as rejected:
        return JsonResponse(
            {"detail": rejected.message}, status=rejected.status, headers=rejected.headers()
        )
    return JsonResponse(minted, status=201)
