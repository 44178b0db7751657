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
from openai.types.chat import ChatCompletion, ChatCompletionChunk

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
            # and typed chunks as `chat.completions.create`, without the per-call walk over
            # every history message that `create` does to validate its typed parameters (it
            # costs ~0.35 ms per message, the largest single cost of a turn on long chats).
            stream = await openai_client(self.base_url, self.api_key).post(
                "/chat/completions",
                body=params,
                cast_to=ChatCompletion,
                stream=True,
                stream_cls=openai.AsyncStream[ChatCompletionChunk],
            )
            streaming = True
            async with stream:
                async for chunk in stream:
                    if chunk.usage is not None:
                        usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                    # Azure's content-filter chunks and usage chunks carry no choices.
                    if not chunk.choices:
                        continue
                    finished = finished or chunk.choices[0].finish_reason is not None
                    delta = chunk.choices[0].delta
                    if delta.content:
                        yield delta.content
                    for piece in delta.tool_calls or ():
                        call = calls.setdefault(piece.index, {"id": "", "name": "", "args": ""})
                        call["id"] = piece.id or call["id"]
                        if piece.function:
                            call["name"] = piece.function.name or call["name"]
                            call["args"] += piece.function.arguments or ""
        except openai.OpenAIError as exc:
            status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
            body = exc.body if isinstance(exc, openai.APIError) else None
            message = describe_failure(LLM, exc, streaming=streaming)
            raise LLMError(message, status_code=status, body=body) from exc
        except ValueError as exc:  # an event that is not JSON
            raise broke_off() from exc
        # Every completion's last chunk names why it finished; without one the stream was cut.
        if not finished:
            raise broke_off()
        for _, call in sorted(calls.items()):
            yield ToolCallRequest(id=call["id"], name=call["name"], arguments=call["args"])
        if usage is not None:
            yield usage
