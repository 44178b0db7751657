"""Any OpenAI-compatible chat-completions API, through the official `openai` SDK.

The SDK already retries 429/5xx and connection errors with exponential backoff (bounded by
`max_retries`) and enforces timeouts, so this module only configures it and translates its
errors into LLMError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
from django.conf import settings

from .base import ChatMessage, LLMError, LLMRequest, ToolCallRequest, Usage
from .sdk import LLM, broke_off, failure_message, loop_client


def openai_client(
    base_url: str | None,
    api_key: str,
    *,
    timeout: float | None = None,
    max_retries: int | None = None,
) -> openai.AsyncOpenAI:
    """The shared SDK client for an endpoint on the running loop; timeout and retries default
    to the LLM settings (speech passes its own)."""
    timeout = settings.LLM_TIMEOUT_SECONDS if timeout is None else timeout
    max_retries = settings.LLM_MAX_RETRIES if max_retries is None else max_retries
    return loop_client(
        ("openai", base_url or "", api_key, timeout, max_retries),
        lambda: openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or None,
            timeout=openai.Timeout(timeout, connect=settings.LLM_CONNECT_TIMEOUT_SECONDS),
            max_retries=max_retries,
        ),
    )


def to_openai_message(message: ChatMessage) -> dict[str, Any]:
    """Neutral message → chat-completions message (images as `image_url` parts)."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.files:
        parts: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": f["url"]}} for f in message.files
        ]
        parts.append({"type": "text", "text": message.content})
        return {"role": message.role, "content": parts}
    result: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        result["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
            for call in message.tool_calls
        ]
    return result


def describe_failure(what: str, exc: openai.OpenAIError, *, streaming: bool = False) -> str:
    """`failure_message` for an error raised by the openai SDK (LLM and speech alike)."""
    return failure_message(
        what,
        status_code=exc.status_code if isinstance(exc, openai.APIStatusError) else None,
        timed_out=isinstance(exc, openai.APITimeoutError),
        streaming=streaming,
    )


class OpenAICompatibleProvider:
    def __init__(self, *, api_key: str, base_url: str | None = None, name: str = "openai") -> None:
        self.api_key = api_key
        self.base_url = base_url
        self.name = name  # what turn records show: "gemini" speaks this protocol too

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | ToolCallRequest | Usage]:
        params: dict[str, Any] = {
            "model": request.model,
            "messages": [to_openai_message(m) for m in request.messages],
            "stream": True,
            # The counts come in one last chunk with no choices.
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            params["temperature"] = request.temperature
        params.update(request.options)
        if request.tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in request.tools
            ]
        # Tool calls arrive in pieces keyed by index (id and name first, then the arguments).
        calls: dict[int, dict[str, str]] = {}
        usage: Usage | None = None
        streaming = finished = False
        try:
            # `client.post` is the SDK's documented raw-body call: same auth, retries, timeouts
            # and server-sent-event decoding as `chat.completions.create`, without the per-call
            # walk over every history message that `create` does to validate its typed
            # parameters (~0.35 ms per message). Chunks come as the JSON objects they are
            # (`object` as the chunk type): building the SDK's typed chunk from each costs
            # more than everything else done with it (docs/benchmarks.md).
            stream = await openai_client(self.base_url, self.api_key).post(
                "/chat/completions",
                body=params,
                cast_to=object,
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
            streaming = True
            async with stream:
                async for chunk in stream:
                    counted, choice = _read_chunk(chunk)
                    if counted is not None:
                        usage = counted
                    # Azure's content-filter chunks and usage chunks carry no choices.
                    if choice is None:
                        continue
                    finished = finished or choice.get("finish_reason") is not None
                    delta = _object(choice.get("delta") or {})
                    content = delta.get("content")
                    if content:
                        yield _text(content)
                    for piece in _list(delta.get("tool_calls") or []):
                        _add_piece(calls, _object(piece))
        except openai.OpenAIError as exc:
            status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
            body = exc.body if isinstance(exc, openai.APIError) else None
            message = describe_failure(LLM, exc, streaming=streaming)
            raise LLMError(message, status_code=status, body=body) from exc
        except ValueError as exc:  # an event that is not JSON, or not a chunk's shape
            raise broke_off() from exc
        # Every completion's last chunk names why it finished; without one the stream was cut.
        if not finished:
            raise broke_off()
        for _, call in sorted(calls.items()):
            yield ToolCallRequest(id=call["id"], name=call["name"], arguments=call["args"])
        if usage is not None:
            yield usage


def _read_chunk(chunk: object) -> tuple[Usage | None, dict[str, Any] | None]:
    """A streamed chunk's usage, if it counts, and its first choice, if it has one (ValueError
    for anything not shaped like a chat-completion chunk)."""
    fields = _object(chunk)
    counted = fields.get("usage")
    usage = None
    if counted is not None:
        tokens = _object(counted)
        usage = Usage(_count(tokens.get("prompt_tokens")), _count(tokens.get("completion_tokens")))
    choices = _list(fields.get("choices") or [])
    return usage, (_object(choices[0]) if choices else None)


def _add_piece(calls: dict[int, dict[str, str]], piece: dict[str, Any]) -> None:
    """Fold a piece of a streamed tool call into `calls`: id and name first, then the
    arguments, keyed by the call's index."""
    index = piece.get("index")
    if not isinstance(index, int) or isinstance(index, bool):
        raise ValueError("a tool call piece without an index")
    call = calls.setdefault(index, {"id": "", "name": "", "args": ""})
    call["id"] = _text(piece.get("id") or call["id"])
    function = _object(piece.get("function") or {})
    call["name"] = _text(function.get("name") or call["name"])
    call["args"] += _text(function.get("arguments") or "")


def _object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _list(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("not a JSON array")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value


def _count(value: object) -> int:
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError("not a token count")
    return value
