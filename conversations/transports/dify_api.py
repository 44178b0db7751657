"""Dify-compatible `POST /chat-messages`, for Dify frontends and SDKs
(docs/wire-protocols.md#dify-chat-messages).

`conversation_id` is our context id; `message_id` and `task_id` are the turn record's id;
`answer` carries the raw chunk text (control tags included, as AIAvatarKit sends it).
Streaming emits `message` per sentence and `message_end` (its metadata carrying `usage` when
the provider counted tokens, and `interrupted` when a stop or a newer request cut the answer
short), or `error` when the turn fails;
`blocking` returns one JSON object. A conversation keeps the `inputs` it started with
(Dify's conversation variables, conversations/transports/dify_app.py).
"""

from __future__ import annotations

import functools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from redis.exceptions import RedisError

from ..admission import admit, find_character, identify
from ..models import Context
from ..pipeline.events import (
    TurnCancelled,
    TurnChunk,
    TurnDropped,
    TurnEvent,
    TurnFailed,
    TurnFinished,
    TurnRequest,
)
from ..pipeline.sessions import run_session_turn
from ..pipeline.turn import prepare_now
from ..rate_limits import StreamSlot
from .base import INTERNAL_ERROR, Rejected, methods, problems, read_json
from .sse import sse_response
from .text import ID_MAX_LENGTH

logger = logging.getLogger(__name__)

CHANNEL = "dify"
SUPERSEDED = "A newer request in this conversation replaced this one."
# How long `POST /chat-messages/{task_id}/stop` can find a stream after it started.
TASK_TTL_SECONDS = 3600


class ChatMessageRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: str
    inputs: dict[str, str] | None = None
    user: str = Field(max_length=ID_MAX_LENGTH)
    conversation_id: str | None = None
    response_mode: str = "streaming"
    files: list[dict[str, str]] | None = None

    @field_validator("response_mode")
    @classmethod
    def _known_mode(cls, mode: str) -> str:
        if mode not in ("streaming", "blocking"):
            raise ValueError("response_mode must be 'streaming' or 'blocking'")
        return mode

    @field_validator("user")
    @classmethod
    def _user_given(cls, user: str) -> str:
        if not user.strip():
            raise ValueError("user must not be empty")
        return user


def _error_fields(rejected: Rejected) -> dict[str, Any]:
    """Dify's error shape, as a response body and as a streamed `error` event. Dify refuses
    an unusable body with 400 `invalid_param` where our own APIs say 422."""
    if rejected.status == 422:
        return {"status": 400, "code": "invalid_param", "message": rejected.message}
    code = "too_many_requests" if rejected.status == 429 else rejected.code
    return {"status": rejected.status, "code": code, "message": rejected.message}


def rejected_response(rejected: Rejected) -> JsonResponse:
    fields = _error_fields(rejected)
    return JsonResponse(fields, status=fields["status"], headers=rejected.headers())


def _failure(event: TurnEvent) -> Rejected | None:
    """How a turn that produced no answer is reported."""
    match event:
        case TurnFailed():
            return Rejected(500, event.error, code="internal_error")
        case TurnCancelled():
            return Rejected(409, SUPERSEDED, code="cancelled")
        case TurnDropped():
            return Rejected(400, event.reason, code="request_refused")
    return None


def _prepare(
    headers: Mapping[str, str], slug: str | None, data: Any
) -> tuple[TurnRequest, StreamSlot | None]:
    """The turn to run and, to stream it, the key's stream slot; the key is checked before
    the body."""
    caller = identify(headers)
    if isinstance(data, Rejected):
        raise data
    try:
        payload = ChatMessageRequest.model_validate(data)
    except ValidationError as exc:
        raise Rejected(400, problems(exc), code="invalid_param") from None
    character = find_character(caller, slug or headers.get("X-Character"))
    session, context = admit(
        caller,
        character,
        channel=CHANNEL,
        user_id=caller.user(payload.user),
        # A conversation is its own session: two requests in one conversation are one session.
        session_id=payload.conversation_id or f"sess_temp_{uuid.uuid4()}",
        context_id=payload.conversation_id,
        context_field="conversation_id",
    )
    # A conversation's own inputs win over the request's: front-ends resend the first ones
    # with every message, and a variable changed through the API must stay changed.
    stored = Context.objects.filter(id=context.context_id).values_list("inputs", flat=True)
    inputs = {**(payload.inputs or {}), **(stored.first() or {})}
    files = [
        {"type": f.get("type", "image"), "url": f["url"]}
        for f in payload.files or []
        if f.get("url", "").startswith(("http://", "https://", "data:"))
    ]
    turn = session.turn(
        context,
        text=payload.query,
        files=files,
        system_prompt_params=inputs,
        speak=False,
    )
    turn.prepared = prepare_now(turn)  # in this hop: the turn needs no trip of its own
    streaming = payload.response_mode == "streaming"
    return turn, caller.open_stream() if streaming else None


def _task_key(task_id: str) -> str:
    return f"dify-task:{task_id}"


async def _remember_task(turn: TurnRequest) -> None:
    """Let a stop request find a stream's session, from any server process, for a while."""
    value = (str(turn.end_user.pk), turn.session_key)
    try:
        await cache.aset(_task_key(str(turn.turn_id)), value, timeout=TASK_TTL_SECONDS)
    except RedisError as exc:  # the answer matters more than a later stop request
        logger.warning("task %s cannot be stopped, the cache is unreachable: %s", turn.turn_id, exc)


def task_session(task_id: str) -> tuple[str, str] | None:
    """The end user id and session key of a stream started lately, by its task id; Rejected
    (503) while the cache that keeps them is unreachable."""
    try:
        found = cache.get(_task_key(task_id))
    except RedisError as exc:
        raise Rejected(
            503, "Stopping is unavailable: Redis is unreachable.", code="service_unavailable"
        ) from exc
    return (str(found[0]), str(found[1])) if found else None


async def _keep_inputs(turn: TurnRequest) -> None:
    """A new conversation keeps the inputs its first turn was given."""
    if turn.system_prompt_params:
        await Context.objects.filter(id=turn.context.context_id, inputs={}).aupdate(
            inputs=turn.system_prompt_params
        )


def _event(name: str, message_id: str, conversation_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "event": name,
        "task_id": message_id,
        "id": message_id,
        "message_id": message_id,
        "conversation_id": conversation_id,
        **fields,
    }


async def _stream(turn: TurnRequest, message_id: str) -> AsyncIterator[str]:
    conversation_id = str(turn.context.context_id)
    created_at = int(time.time())
    await _remember_task(turn)
    async for event in run_session_turn(turn):
        match event:
            case TurnChunk():
                yield json.dumps(
                    _event(
                        "message",
                        message_id,
                        conversation_id,
                        answer=event.text,
                        created_at=created_at,
                    ),
                    ensure_ascii=False,
                )
            case TurnFinished():
                await _keep_inputs(turn)
                yield json.dumps(
                    _event(
                        "message_end",
                        message_id,
                        conversation_id,
                        answer=None,
                        metadata=_metadata(event),
                        created_at=created_at,
                    )
                )
        if failure := _failure(event):
            yield _error_event(failure, message_id, conversation_id)


def _metadata(event: TurnFinished) -> dict[str, Any]:
    """message_end's metadata: `usage` as Dify reports its model's (when the provider counted
    tokens), and `interrupted` when a newer request cut the reply short."""
    metadata: dict[str, Any] = {"interrupted": True} if event.interrupted else {}
    if event.usage is not None:
        metadata["usage"] = {
            "prompt_tokens": event.usage.prompt_tokens,
            "completion_tokens": event.usage.completion_tokens,
            "total_tokens": event.usage.total_tokens,
        }
    return metadata


def _error_event(failure: Rejected, message_id: str, conversation_id: str) -> str:
    fields = _error_fields(failure)
    return json.dumps(_event("error", message_id, conversation_id, **fields), ensure_ascii=False)


async def _blocking(turn: TurnRequest) -> JsonResponse:
    message_id = str(turn.turn_id)
    conversation_id = str(turn.context.context_id)
    async for event in run_session_turn(turn):
        if failure := _failure(event):
            return rejected_response(failure)
        if isinstance(event, TurnFinished):
            await _keep_inputs(turn)
            return JsonResponse(
                _event(
                    "message",
                    message_id,
                    conversation_id,
                    mode="chat",
                    answer=event.text,
                    metadata=_metadata(event),
                    created_at=int(time.time()),
                ),
                json_dumps_params={"ensure_ascii": False},
            )
    raise RuntimeError("the turn ended without a final event")


@csrf_exempt
@methods("POST", refuse=rejected_response)
async def chat_messages(request: HttpRequest, slug: str | None = None) -> HttpResponseBase:
    try:
        data: Any = read_json(request)
    except Rejected as rejected:
        data = rejected
    try:
        turn, slot = await sync_to_async(_prepare)(request.headers, slug, data)
    except Rejected as rejected:
        return rejected_response(rejected)
    if slot is None:
        return await _blocking(turn)
    message_id = str(turn.turn_id)
    failed = functools.partial(
        _error_event,
        Rejected(500, INTERNAL_ERROR, code="internal_error"),
        message_id,
        str(turn.context.context_id),
    )
    return sse_response(
        _stream(turn, message_id), failed=failed, ping='{"event": "ping"}', slot=slot
    )
