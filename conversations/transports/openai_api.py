"""OpenAI-compatible `POST /v1/chat/completions` and `GET /v1/models`
(docs/wire-protocols.md#openai-chat-completions).

`model` names the character. Who keeps the conversation is the API key's choice, else the
character's (`openai_history`): the server (only the last user message of the request is
read; each end user continues their latest conversation with the character) or the client
(the request's messages are the whole conversation, its system messages follow the
character's, and nothing but the turn record is stored, so a front-end's "New chat" starts
afresh). The API key (never the raw token) plus the optional `user` field name the end user.
Replies carry the text without control tags, and `usage` when the provider counted tokens.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..admission import admit, find_character, identify, reachable_characters
from ..history import OpenedContext
from ..llm.base import INLINE_PARAMS, ChatMessage, Usage, check_inline_params
from ..models import ApiKey
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
from ..pipeline.turn import prepare_now
from ..rate_limits import StreamSlot
from .base import INTERNAL_ERROR, Rejected, methods, problems, read_json
from .sse import sse_response
from .text import ID_MAX_LENGTH

CHANNEL = "openai"


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    stream_options: StreamOptions | None = None
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


def _read_content(content: Any) -> tuple[str, list[dict[str, str]]]:
    """The text and images of one message's content (a string or a list of parts)."""
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


def _last_user_index(messages: list[dict[str, Any]]) -> int:
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        raise Rejected(400, "messages must contain a user message", code="invalid_messages")
    return users[-1]


@dataclass(slots=True)
class ClientConversation:
    """What a client that keeps the conversation sent: its system text and the history
    before its last user message."""

    system: str
    history: list[ChatMessage]


def _client_conversation(messages: list[dict[str, Any]], last: int) -> ClientConversation:
    systems: list[str] = []
    history: list[ChatMessage] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role in ("system", "developer"):
            systems.append(_read_content(message.get("content"))[0])
        elif index > last:
            raise Rejected(
                400, "messages must end with the user's message", code="invalid_messages"
            )
        elif role in ("user", "assistant") and index < last:
            text, files = _read_content(message.get("content") or "")
            history.append(ChatMessage(role=str(role), content=text, files=files))
        elif index < last:
            raise Rejected(
                400,
                f"messages[{index}].role: {str(role)[:40]!r} is not taken: the character's "
                "own tools run on the server.",
                code="invalid_messages",
            )
    # The same window as a server-kept conversation, starting with a user message.
    history = history[-settings.CONTEXT_HISTORY_LIMIT :]
    while history and history[0].role != "user":
        history.pop(0)
    return ClientConversation("\n\n".join(s for s in systems if s.strip()), history)


def _history_mode(caller_key_id: int | None, character_mode: str) -> str:
    """The API key's choice of who keeps the conversation, else the character's."""
    if caller_key_id is None:
        return character_mode
    chosen = ApiKey.objects.filter(pk=caller_key_id).values_list("openai_history", flat=True)
    return chosen.first() or character_mode


Prepared = tuple[TurnRequest, CompletionRequest, StreamSlot | None]


def _prepare(headers: Mapping[str, str], data: Any) -> Prepared:
    """The turn, the request and, to stream it, the key's stream slot."""
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
    last = _last_user_index(payload.messages)
    text, files = _read_content(payload.messages[last].get("content"))
    try:
        character = find_character(caller, payload.model)
    except Rejected:
        raise Rejected(
            404, f"The model {payload.model!r} does not exist.", code="model_not_found"
        ) from None
    client = None
    if _history_mode(caller.api_key_id, character.openai_history) == "client":
        client = _client_conversation(payload.messages, last)
    session, context = admit(
        caller,
        character,
        channel=CHANNEL,
        # The key's id, not its secret, names the user; `user` tells apart people sharing it.
        user_id=f"key-{caller.api_key_id}:{caller.user(payload.user) or ''}",
        session_id=f"openai_{uuid.uuid4()}",
        resume=client is None,
    )
    if client is not None:
        context = OpenedContext(context.context_id, client.history)
    turn = session.turn(
        context,
        text=text,
        files=files,
        speak=False,
        llm_params=params,
        client_system=client.system if client else "",
        keep_history=client is None,
    )
    turn.prepared = prepare_now(turn)  # in this hop: the turn needs no trip of its own
    return turn, payload, caller.open_stream() if payload.stream else None


def _usage(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


@dataclass(slots=True)
class _Chunks:
    """The chunks of one streamed completion; with `include_usage`, every chunk has a null
    `usage` and one last chunk without choices carries the counts, as OpenAI streams them."""

    model: str
    include_usage: bool
    completion_id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4()}")
    created: int = field(default_factory=lambda: int(time.time()))

    def _body(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        body = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **({"usage": None} if self.include_usage else {}),
            **extra,
        }
        return json.dumps(body, ensure_ascii=False)

    def choice(self, **choice: Any) -> str:
        return self._body([{"index": 0, **choice}])

    def usage(self, usage: Usage | None) -> str:
        return self._body([], usage=_usage(usage))


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


async def _stream(turn: TurnRequest, chunks: _Chunks) -> AsyncIterator[str]:
    voice_tags = bool(turn.character.voice_tag_names())
    first = True
    yield chunks.choice(delta={"role": "assistant", "content": ""})
    async for event in run_session_turn(turn):
        if failure := _failure(event):
            yield _error_event(failure)
        elif isinstance(event, TurnFinished):
            yield chunks.choice(delta={}, finish_reason="stop")
            if chunks.include_usage:
                yield chunks.usage(event.usage)
            yield "[DONE]"
        elif isinstance(event, TurnChunk) and (content := _content(event, voice_tags, first)):
            first = False
            yield chunks.choice(delta={"content": content})


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
                    "usage": _usage(event.usage),
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
        turn, payload, slot = await sync_to_async(_prepare)(request.headers, data)
    except Rejected as rejected:
        return rejected_response(rejected)
    if slot is not None:
        failed = functools.partial(_error_event, Rejected(500, INTERNAL_ERROR, code="internal"))
        options = payload.stream_options or StreamOptions()
        chunks = _Chunks(payload.model, options.include_usage)
        return sse_response(_stream(turn, chunks), failed=failed, slot=slot)
    return await _complete(turn, payload.model)


def _models(headers: Mapping[str, str], slug: str | None = None) -> list[dict[str, Any]]:
    characters = reachable_characters(identify(headers))
    if slug is not None:
        characters = characters.filter(slug=slug)
    return [
        {"id": slug, "object": "model", "created": int(at.timestamp()), "owned_by": "avatarsite"}
        for slug, at in characters.values_list("slug", "created_at")
    ]


@methods("GET", refuse=rejected_response)
async def models(request: HttpRequest) -> JsonResponse:
    try:
        listing = await sync_to_async(_models)(request.headers)
    except Rejected as rejected:
        return rejected_response(rejected)
    return JsonResponse({"object": "list", "data": listing})


@methods("GET", refuse=rejected_response)
async def model(request: HttpRequest, model_id: str) -> JsonResponse:
    """One of the caller's characters as a model; another tenant's is as unknown as none."""
    try:
        found = await sync_to_async(_models)(request.headers, model_id)
    except Rejected as rejected:
        return rejected_response(rejected)
    if not found:
        message = f"The model {model_id[:100]!r} does not exist."
        return rejected_response(Rejected(404, message, code="model_not_found"))
    return JsonResponse(found[0])
