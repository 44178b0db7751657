"""AIAvatarKit-compatible HTTP transport: `POST /chat` (SSE), `POST /start`, and `POST /feedback`
(an end user's like or dislike of an answer, named by its `transaction_id`).

Thin by design: authenticate, validate the envelope, resolve who is talking to whom (one
database hop), then stream the pipeline's events in AIAvatarKit's wire format.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from characters.models import Character

from ..admission import Caller, admit, admit_session, find_character, identify, known_end_user
from ..feedback import MAX_COMMENT_LENGTH, rate_turn
from ..models import EndUser, TurnRecord
from ..pipeline.events import TurnRequest
from ..pipeline.sessions import run_session_turn
from ..pipeline.turn import prepare_now
from ..rate_limits import StreamSlot
from ..speech.audio import AudioError, speech_input
from .aiavatar_wire import (
    AIAvatarRequest,
    envelope,
    error_envelope,
    error_response,
    event_envelope,
    validation_errors,
)
from .base import INTERNAL_ERROR, Rejected, methods, read_json
from .sse import sse_response
from .text import ID_MAX_LENGTH

CHANNEL = "http"
# What AIAvatarKit's HTTP clients send (`start`; its socket's `invoke` means the same here).
TURN_TYPES = ("start", "invoke")


def _parse_envelope(request: HttpRequest) -> AIAvatarRequest | Rejected:
    """The envelope, or the reason it is unusable (reported once the key has been checked)."""
    try:
        parsed = AIAvatarRequest.model_validate(read_json(request))
    except Rejected as rejected:
        return rejected
    except ValidationError as exc:
        return Rejected(
            422, "invalid envelope", code="validation", body={"detail": validation_errors(exc)}
        )
    if parsed.type not in TURN_TYPES:
        message = f"type must be one of {', '.join(TURN_TYPES)}"
        detail = [{"loc": ["body", "type"], "msg": message, "type": "literal_error"}]
        return Rejected(422, message, code="validation", body={"detail": detail})
    if not parsed.session_id:
        return Rejected(400, "session_id is required.", code="session_id")
    return parsed


def _admit(
    headers: Mapping[str, str], slug: str | None, parsed: AIAvatarRequest | Rejected
) -> tuple[AIAvatarRequest, Caller, Character]:
    """Authenticate first, then report body errors, then find the character; the envelope's
    user is the one a browser token speaks for, if it names one."""
    caller = identify(headers)
    if isinstance(parsed, Rejected):
        raise parsed
    payload = parsed.model_copy(update={"user_id": caller.user(parsed.user_id)})
    return payload, caller, find_character(caller, slug or headers.get("X-Character"))


def _prepare_chat(
    headers: Mapping[str, str], slug: str | None, parsed: AIAvatarRequest | Rejected
) -> tuple[TurnRequest, AIAvatarRequest, StreamSlot]:
    payload, caller, character = _admit(headers, slug, parsed)
    assert payload.session_id
    audio = payload.audio()
    if audio is not None:
        try:
            audio = speech_input(audio)
        except AudioError as exc:
            raise Rejected(400, str(exc), code="audio") from None
    session, context = admit(
        caller,
        character,
        channel=CHANNEL,
        user_id=payload.user_id or f"session:{payload.session_id}",
        session_id=payload.session_id,
        context_id=payload.context_id,
    )
    turn = session.turn(
        context,
        text=payload.text or "",
        audio=audio,
        files=payload.files or [],
        system_prompt_params=payload.system_prompt_params or {},
        llm_params=payload.llm_params(),
        allow_merge=payload.allow_merge,
        speech_speed=payload.speech_speed(),
        face_frames=payload.avatar_frames(),
    )
    turn.prepared = prepare_now(turn)  # in this hop: the turn needs no trip of its own
    return turn, payload, caller.open_stream()


def _prepare_start(
    headers: Mapping[str, str], slug: str | None, parsed: AIAvatarRequest | Rejected
) -> tuple[AIAvatarRequest, Character, EndUser, str]:
    payload, caller, character = _admit(headers, slug, parsed)
    assert payload.session_id
    session = admit_session(
        caller,
        character,
        channel=CHANNEL,
        user_id=payload.user_id,
        session_id=payload.session_id,
    )
    return payload, character, session.end_user, payload.user_id or str(session.end_user.id)


async def _events(
    turn: TurnRequest, user_id: str | None, wait_in_queue: bool
) -> AsyncIterator[str]:
    async for event in run_session_turn(turn, wait_in_queue=wait_in_queue):
        yield event_envelope(
            event, session_id=turn.session_id, user_id=user_id, transaction_id=str(turn.turn_id)
        )


@csrf_exempt
@methods("POST", refuse=error_response)
async def chat(request: HttpRequest, slug: str | None = None) -> HttpResponseBase:
    parsed = _parse_envelope(request)
    try:
        turn, payload, slot = await sync_to_async(_prepare_chat)(request.headers, slug, parsed)
    except Rejected as rejected:
        return error_response(rejected)
    failed = functools.partial(
        error_envelope,
        INTERNAL_ERROR,
        session_id=turn.session_id,
        user_id=payload.user_id,
        context_id=str(turn.context.context_id),
    )
    events = _events(turn, payload.user_id, payload.wait_in_queue)
    return sse_response(events, failed=failed, slot=slot)


@csrf_exempt
@methods("POST", refuse=error_response)
async def start(request: HttpRequest, slug: str | None = None) -> HttpResponseBase:
    parsed = _parse_envelope(request)
    try:
        payload, character, end_user, user_id = await sync_to_async(_prepare_start)(
            request.headers, slug, parsed
        )
    except Rejected as rejected:
        return error_response(rejected)
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

    failed = functools.partial(
        error_envelope,
        INTERNAL_ERROR,
        session_id=payload.session_id,
        user_id=user_id,
        context_id=payload.context_id,
    )
    return sse_response(connected(), failed=failed)


class FeedbackRequest(BaseModel):
    """A verdict on one answer: the `transaction_id` its responses carried, who gave it (as
    the turn named its user: `user_id`, else the `session_id` of a /chat turn without one),
    like or dislike (null: none), and an optional comment."""

    model_config = ConfigDict(extra="ignore")

    transaction_id: str = Field(max_length=ID_MAX_LENGTH)
    user_id: str | None = Field(None, max_length=ID_MAX_LENGTH)
    session_id: str | None = Field(None, max_length=ID_MAX_LENGTH)
    rating: Literal["like", "dislike"] | None = None
    comment: str | None = Field(None, max_length=MAX_COMMENT_LENGTH)


def _rate(headers: Mapping[str, str], slug: str | None, data: Any) -> dict[str, Any]:
    caller = identify(headers)
    if isinstance(data, Rejected):
        raise data
    try:
        payload = FeedbackRequest.model_validate(data)
    except ValidationError as exc:
        raise Rejected(
            422, "invalid feedback", code="validation", body={"detail": validation_errors(exc)}
        ) from None
    user = caller.user(payload.user_id) or (
        f"session:{payload.session_id}" if payload.session_id else None
    )
    if user is None:
        raise Rejected(400, "user_id (or session_id) is required.", code="user_id")
    character = find_character(caller, slug or headers.get("X-Character"))
    unknown = Rejected(404, "Unknown transaction_id.", code="not_found")
    try:
        turn_id = uuid.UUID(payload.transaction_id)
    except ValueError:
        raise unknown from None
    # The user is named on the channel the turn came in on (/chat's or /ws's identities).
    channel = (
        TurnRecord.objects.filter(id=turn_id, character=character)
        .values_list("channel", flat=True)
        .first()
    )
    end_user = known_end_user(caller, channel, user) if channel else None
    if not rate_turn(turn_id, character, end_user, payload.rating, payload.comment):
        raise unknown
    return {
        "transaction_id": str(turn_id),
        "rating": payload.rating,
        "comment": payload.comment or "",
    }


@csrf_exempt
@methods("POST", refuse=error_response)
async def feedback(request: HttpRequest, slug: str | None = None) -> HttpResponseBase:
    try:
        data: Any = read_json(request)
    except Rejected as rejected:
        data = rejected
    try:
        body = await sync_to_async(_rate)(request.headers, slug, data)
    except Rejected as rejected:
        return error_response(rejected)
    return JsonResponse(body, json_dumps_params={"ensure_ascii": False})
