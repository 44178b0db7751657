"""What every HTTP transport does before a turn starts, whatever its wire format.

Each check raises `Rejected` with a status, a message and a machine code; each transport renders
that in its own API's error shape (AIAvatarKit, OpenAI, Dify).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from pydantic import ValidationError

from characters.models import Character

from .history import OpenedContext, UnknownContext, open_context
from .models import ApiKey


class Rejected(Exception):
    """A request refused before any streaming starts."""

    def __init__(
        self, status: int, message: str, *, code: str, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.body = body  # an exact body, when the wire format dictates one


def problems(exc: ValidationError, root: str = "body") -> str:
    """A pydantic error as one readable line: `field.path: message; ...`."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or root}: {e['msg']}"
        for e in exc.errors(include_url=False, include_input=False)
    )


def read_json(request: HttpRequest) -> Any:
    try:
        body = request.body
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raise Rejected(
            413, f"Request body is larger than {limit} bytes.", code="payload_too_large"
        ) from None
    try:
        return json.loads(body)
    except ValueError:
        raise Rejected(422, "Body is not valid JSON", code="json") from None


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def authenticate(headers: Mapping[str, str]) -> ApiKey:
    token = bearer_token(headers)
    key = ApiKey.authenticate(token) if token else None
    if key is None:
        raise Rejected(401, "Invalid or missing API Key", code="invalid_api_key")
    return key


def find_character(tenant_id: int, slug: str | None) -> Character:
    """The tenant's active character named by `slug`, or its default one when no slug is given.

    Its voice settings come along, so the async pipeline never queries for them."""
    characters = Character.objects.filter(tenant_id=tenant_id, is_active=True).select_related(
        "voice"
    )
    if slug:
        character = characters.filter(slug=slug).first()
        if character is None:
            raise Rejected(404, f"Unknown character {slug!r}.", code="character_not_found")
        return character
    character = characters.filter(is_default=True).first()
    if character is None:
        raise Rejected(
            404,
            "No default character. Mark one as default in the admin, or name one with the "
            "X-Character header or /characters/<slug>/....",
            code="character_not_found",
        )
    return character


def continue_context(character: Character, raw_id: str | None, field: str) -> OpenedContext:
    """The conversation `raw_id` names, or a new one when it names none."""
    try:
        return open_context(character, uuid.UUID(raw_id) if raw_id else None)
    except (UnknownContext, ValueError):
        raise Rejected(
            404,
            f"Unknown {field} {raw_id!r}: send none to start a conversation, then reuse the one "
            "the server returns.",
            code="not_found",
        ) from None
