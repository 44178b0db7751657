"""OpenAI-compatible `POST /v1/chat/completions` and `GET /v1/models`
(docs/wire-protocols.md#openai-chat-completions).

`model` names the character. History lives on the server, so only the last user message of
the request is read. The API key (never the raw token) plus the optional `user` field name the
end user; each user continues their latest conversation with the character. Replies carry the
text without control tags.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..admission import admit, find_character, identify, reachable_characters
from ..llm.base import INLINE_PARAMS, check_inline_params
from ..pipeline.events import (
    TurnChunk,
    TurnDropped,
    TurnEvent,
    TurnFailed,
    TurnFinished,
    TurnRequest,
)
from ..pipeline.sessions import run_session_turn
from ..pipeline.tags import without_tags
from ..rate_limits import StreamSlot
from .base import INTERNAL_ERROR, Rejected, methods, problems, read_json
from .sse import sse_response
from .text import ID_MAX_LENGTH

CHANNEL = "openai"


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    user: str | None = Field(None, max_length=ID_MAX_LENGTH)
    n: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None


def _error_body(rejected: Rejected) -> dict[str, Any]:
    """OpenAI's error shape, so the official SDK raises its matching exception."""
    if rejected.status == 429:
        kind, code = "requests", "rate_limit_exceeded"
    else:
        kind = "server_error" if rejected.status >= 500 else "invalid_request_error"
        code = rejected.code
    return {"error": {"message": rejected.message, "type": kind, "code": code}}


def _status(rejected: Rejected) -> int:
    """OpenAI refuses an unusable body with 400 where our own APIs say 422."""
    return 400 if rejected.status == 422 else rejected.status


def rejected_response(rejected: Rejected) -> JsonResponse:
    return JsonResponse(_error_body(rejected), status=_status(rejected), headers=rejected.headers())


def _failure(event: TurnEvent) -> Rejected | None:
    """How a turn that produced no answer is reported."""
    match event:
        case TurnFailed():
            return Rejected(502, event.error, code="turn_failed")
        case TurnDropped():
            return Rejected(400, event.reason, code="request_refused")
    return None


def _last_user_message(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, str]]]:
    """Text and images of the last user message (the server keeps the history itself)."""
    message = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    if message is None:
        raise Rejected(400, "messages must contain a user message", code="invalid_messages")
    content = message.get("content")
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise Rejected(400, "message content must be a string or a list", code="invalid_messages")
    texts, files = [], []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            texts.append(str(part.get("text", "")))
        elif isinstance(part, dict) and part.get("type") == "image_url":
            image = part.get("image_url") or {}
            if not isinstance(image, dict):
                raise Rejected(
                    400, "image_url must be an object with a url", code="invalid_messages"
                )
            url = image.get("url", "")
            if isinstance(url, str) and url.startswith(("http://", "https://", "data:")):
                files.append({"type": "image", "url": url})
    return "\n".join(texts), files


def _prepare(headers: Mapping[str, str], data: Any) -> tuple[TurnRequest, str, StreamSlot | None]:
    """The turn, the model it names and, to stream it, the key's stream slot."""
    caller = identify(headers)
    if isinstance(data, Rejected):
        raise data
    try:
        payload = CompletionRequest.model_validate(data)
    except ValidationError as exc:
        raise Rejected(400, problems(exc), code="invalid_request") from None
    if payload.n not in (None, 1):
        raise Rejected(400, "n: only one choice per request is served.", code="unsupported_value")
    if payload.tools or payload.functions:
        raise Rejected(
            400,
            "tools: the character's own tools run on the server; client tools are not taken.",
            code="unsupported_parameter",
        )
    # Sampling parameters of the request apply to this turn; `model` names the character.
    params = {k: data[k] for k in INLINE_PARAMS - {"model"} if k in data}
    try:
        check_inline_params(params, where="body")
    except ValueError as exc:
        raise Rejected(400, str(exc), code="invalid_value") from None
    text, files = _last_user_message(payload.messages)
    try:
        character = find_character(caller, payload.model)
    except Rejected:
        raise Rejected(
            404, f"The model {payload.model!r} does not exist.", code="model_not_found"
        ) from None
    session, context = admit(
        caller,
        character,
        channel=CHANNEL,
        # The key's id, not its secret, names the user; `user` tells apart people sharing it.
        user_id=f"key-{caller.api_key_id}:{caller.user(payload.user) or ''}",
        session_id=f"openai_{uuid.uuid4()}",
        resume=True,
    )
    turn = session.turn(
        context,
        text=text,
        files=files,
        speak=False,
        llm_params=params,
    )
    return turn, payload.model, caller.open_stream() if payload.stream else None


def _chunk(completion_id: str, created: int, model: str, **choice: Any) -> str:
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, **choice}],
    }
    return json.dumps(body, ensure_ascii=False)


def _content(chunk: TurnChunk, voice_tags: bool, first: bool) -> str:
    """What a text client reads of a chunk: the text without control tags or, for a character
    that speaks only inside voice tags, just that spoken part."""
    if not voice_tags:
        return without_tags(chunk.text)
    if not chunk.voice_text:
        return ""
    return chunk.voice_text if first else f" {chunk.voice_text}"


def _error_event(failure: Rejected) -> str:
    return json.dumps(_error_body(failure), ensure_ascii=False)


async def _stream(turn: TurnRequest, model: str) -> AsyncIterator[str]:
    completion_id, created = f"chatcmpl-{uuid.uuid4()}", int(time.time())
    voice_tags = bool(turn.character.voice_tag_names())
    first = True
    yield _chunk(completion_id, created, model, delta={"role": "assistant", "content": ""})
    async for event in run_session_turn(turn):
        if failure := _failure(event):
            yield _error_event(failure)
        elif isinstance(event, TurnFinished):
            yield _chunk(completion_id, created, model, delta={}, finish_reason="stop")
            yield "[DONE]"
        elif isinstance(event, TurnChunk) and (content := _content(event, voice_tags, first)):
            first = False
            yield _chunk(completion_id, created, model, delta={"content": content})


async def _complete(turn: TurnRequest, model: str) -> JsonResponse:
    async for event in run_session_turn(turn):
        if failure := _failure(event):
            return rejected_response(failure)
        if isinstance(event, TurnFinished):
            voice_tags = bool(turn.character.voice_tag_names())
            content = event.voice_text if voice_tags else without_tags(event.text).strip()
            message = {"role": "assistant", "content": content}
            return JsonResponse(
                {
                    "id": f"chatcmpl-{uuid.uuid4()}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": None,
                },
                json_dumps_params={"ensure_ascii": False},
            )
    raise RuntimeError("the turn ended without a final event")


@csrf_exempt
@methods("POST", refuse=rejected_response)
async def chat_completions(request: HttpRequest) -> HttpResponseBase:
    try:
        data: Any = read_json(request)
    except Rejected as rejected:
        data = rejected
    try:
        turn, model, slot = await sync_to_async(_prepare)(request.headers, data)
    except Rejected as rejected:
        return rejected_response(rejected)
    if slot is not None:
        failed = functools.partial(_error_event, Rejected(500, INTERNAL_ERROR, code="internal"))
        return sse_response(_stream(turn, model), failed=failed, slot=slot)
    return await _complete(turn, model)


def _models(headers: Mapping[str, str]) -> list[dict[str, Any]]:
    characters = reachable_characters(identify(headers)).values_list("slug", "created_at")
    return [
        {"id": slug, "object": "model", "created": int(at.timestamp()), "owned_by": "avatarsite"}
        for slug, at in characters
    ]


@methods("GET", refuse=rejected_response)
async def models(request: HttpRequest) -> JsonResponse:
    try:
        listing = await sync_to_async(_models)(request.headers)
    except Rejected as rejected:
        return rejected_response(rejected)
    return JsonResponse({"object": "list", "data": listing})
