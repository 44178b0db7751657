"""AIAvatarKit-compatible HTTP transport: `POST /chat` (SSE) and `POST /start`.

Thin by design: authenticate, validate the envelope, resolve who is talking to whom (one
database hop), then stream the pipeline's events in AIAvatarKit's wire format.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from pydantic import ValidationError

from characters.models import Character

from .aiavatar_wire import AIAvatarRequest, envelope, event_envelope, validation_errors
from .auth import INVALID_KEY, authenticate_bearer
from .history import UnknownContext, new_end_user, open_context, resolve_end_user
from .models import EndUser
from .pipeline.events import TurnRequest
from .pipeline.turn import run_turn
from .speech.audio import AudioError, speech_input
from .sse import sse_response

logger = logging.getLogger(__name__)

CHANNEL = "http"


class Rejected(Exception):
    """A request refused before any streaming starts: status code and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


def _parse_envelope(request: HttpRequest) -> AIAvatarRequest | Rejected:
    try:
        body = request.body
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Rejected(413, {"detail": f"Request body is larger than {limit} bytes."})
    try:
        data = json.loads(body)
    except ValueError:
        return Rejected(
            422, {"detail": [{"loc": ["body"], "msg": "Body is not valid JSON", "type": "json"}]}
        )
    try:
        parsed = AIAvatarRequest.model_validate(data)
    except ValidationError as exc:
        return Rejected(422, {"detail": validation_errors(exc)})
    if not parsed.session_id:
        return Rejected(400, {"error": "session_id is required."})
    return parsed


def character_for(slug: str | None) -> Character:
    """The named active character, else the default one; Rejected(404) when there is none.
    Voice settings come along, so the async pipeline never queries for them."""
    characters = Character.objects.filter(is_active=True).select_related("voice")
    if slug:
        character = characters.filter(slug=slug).first()
        if character is None:
            raise Rejected(404, {"detail": f"Unknown character {slug!r}."})
        return character
    character = characters.filter(is_default=True).first()
    if character is None:
        raise Rejected(
            404,
            {
                "detail": "No default character. Mark one as default in the admin, or name one "
                "with the X-Character header or /characters/<slug>/chat."
            },
        )
    return character


def _admit(
    headers: Mapping[str, str], slug: str | None, parsed: AIAvatarRequest | Rejected
) -> tuple[AIAvatarRequest, Character]:
    """Authenticate first, then report body errors, then find the character."""
    if authenticate_bearer(headers) is None:
        raise Rejected(401, INVALID_KEY)
    if isinstance(parsed, Rejected):
        raise parsed
    return parsed, character_for(slug or headers.get("X-Character"))


def _prepare_chat(
    headers: Mapping[str, str], slug: str | None, parsed: AIAvatarRequest | Rejected
) -> tuple[TurnRequest, str | None]:
    payload, character = _admit(headers, slug, parsed)
    assert payload.session_id
    requested = uuid.UUID(payload.context_id) if payload.context_id else None
    try:
        context = open_context(character, requested)
    except UnknownContext:
        raise Rejected(
            404,
            {
                "detail": f"Unknown context_id {payload.context_id!r}: send no context_id to "
                "start a conversation, then reuse the one the start event returns."
            },
        ) from None
    try:
        audio = payload.audio()
        if audio is not None:
            audio = speech_input(
                audio,
                sample_rate=settings.SPEECH_SAMPLE_RATE,
                max_seconds=settings.STT_MAX_AUDIO_SECONDS,
            )
    except AudioError as exc:
        raise Rejected(400, {"error": str(exc)}) from None
    # Only now, with the request known to be good, may a new end user be created.
    end_user = resolve_end_user(CHANNEL, payload.user_id or f"session:{payload.session_id}")
    turn = TurnRequest(
        character=character,
        end_user=end_user,
        channel=CHANNEL,
        session_id=payload.session_id,
        context=context,
        text=payload.text or "",
        audio=audio,
        files=payload.files or [],
        system_prompt_params=payload.system_prompt_params or {},
        speech_speed=payload.speech_speed(),
    )
    return turn, payload.user_id


def _prepare_start(
    headers: Mapping[str, str], slug: str | None, parsed: AIAvatarRequest | Rejected
) -> tuple[AIAvatarRequest, Character, EndUser, str]:
    payload, character = _admit(headers, slug, parsed)
    if payload.user_id:
        return payload, character, resolve_end_user(CHANNEL, payload.user_id), payload.user_id
    end_user = new_end_user(CHANNEL)
    return payload, character, end_user, str(end_user.id)


async def _events(turn: TurnRequest, user_id: str | None) -> AsyncIterator[str]:
    try:
        async for event in run_turn(turn):
            yield event_envelope(event, session_id=turn.session_id, user_id=user_id)
    except Exception:
        # The pipeline reports its own failures; this only catches bugs, so the client still
        # gets an error event instead of a connection cut mid-stream.
        logger.exception("unexpected failure streaming a turn")
        yield envelope(
            "error",
            session_id=turn.session_id,
            user_id=user_id,
            context_id=str(turn.context.context_id),
            metadata={"error": "Internal error in the conversation pipeline"},
        )


@csrf_exempt
@require_POST
async def chat(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    parsed = _parse_envelope(request)
    try:
        turn, user_id = await sync_to_async(_prepare_chat)(request.headers, slug, parsed)
    except Rejected as rejected:
        return JsonResponse(rejected.body, status=rejected.status)
    return sse_response(_events(turn, user_id))


@csrf_exempt
@require_POST
async def start(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    parsed = _parse_envelope(request)
    try:
        payload, character, end_user, user_id = await sync_to_async(_prepare_start)(
            request.headers, slug, parsed
        )
    except Rejected as rejected:
        return JsonResponse(rejected.body, status=rejected.status)
    metadata = {"charactername": character.name}
    if end_user.display_name:
        metadata["username"] = end_user.display_name

    async def connected() -> AsyncIterator[str]:
        yield envelope(
            "connected",
            session_id=payload.session_id,
            user_id=user_id,
            context_id=payload.context_id,
            metadata=metadata,
        )

    return sse_response(connected())
