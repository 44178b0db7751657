"""Claude through the official `anthropic` SDK (the Messages API, streamed).

Like the OpenAI provider, this module only configures the SDK (it retries 429, 529 and other
5xx answers and connection errors with backoff, bounded by `max_retries`, and enforces
timeouts), converts neutral messages to the Messages API's shape, and translates failures into
LLMError.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

import anthropic
import httpx2
from django.conf import settings

from .base import ChatMessage, LLMError, LLMRequest, ToolCallRequest, ToolSpec, Usage
from .sdk import LLM, broke_off, failure_message, loop_client

logger = logging.getLogger(__name__)

JSON = dict[str, Any]


def _client(base_url: str | None, api_key: str) -> anthropic.AsyncAnthropic:
    return loop_client(
        ("anthropic", base_url or "", api_key),
        lambda: anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url or None,
            timeout=anthropic.Timeout(
                settings.LLM_TIMEOUT_SECONDS, connect=settings.LLM_CONNECT_TIMEOUT_SECONDS
            ),
            max_retries=settings.LLM_MAX_RETRIES,
        ),
    )


def _image_block(url: str) -> JSON:
    """An image by URL, or inline for a `data:` URL (the API cannot fetch those)."""
    if not url.startswith("data:"):
        return {"type": "image", "source": {"type": "url", "url": url}}
    header, _, payload = url[len("data:") :].partition(",")
    media_type, *options = header.split(";")
    if "base64" not in options:
        payload = base64.b64encode(unquote_to_bytes(payload)).decode()
    return {
        "type": "image",
        "source": {"type": "base64", "media_type": media_type or "image/png", "data": payload},
    }


def _tool_input(arguments: str) -> JSON:
    """A recorded call's arguments as the object `tool_use.input` must be. Claude's own calls
    are always valid JSON; history from another provider may hold anything, which the tool
    already answered with an error, so an empty object keeps the request valid."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _blocks(message: ChatMessage) -> list[JSON]:
    """Content blocks of one neutral message. Empty text blocks are left out: the API
    rejects them, and an answer of only tool calls has no text."""
    if message.role == "tool":
        return [
            {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}
        ]
    blocks = [_image_block(f["url"]) for f in message.files]
    if message.content.strip():
        blocks.append({"type": "text", "text": message.content})
    blocks.extend(
        {
            "type": "tool_use",
            "id": call["id"],
            "name": call["name"],
            "input": _tool_input(call["arguments"]),
        }
        for call in message.tool_calls
    )
    return blocks


def to_anthropic_messages(messages: Sequence[ChatMessage]) -> tuple[str, list[JSON]]:
    """Neutral messages → (`system`, `messages`) for the Messages API.

    System messages become the `system` parameter; tool results travel in a user message.
    The API wants user and assistant turns to alternate, so consecutive messages of one role
    (several tool results, or a tool result followed by the user's next words) are merged
    into one message, keeping the tool results first as the API requires.
    """
    system: list[str] = []
    converted: list[JSON] = []
    for message in messages:
        if message.role == "system":
            system.append(message.content)
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if converted and converted[-1]["role"] == role:
            converted[-1]["content"].extend(blocks)
        else:
            converted.append({"role": role, "content": blocks})
    for entry in converted:
        # A lone text block reads (and costs) the same as a plain string.
        content = entry["content"]
        if len(content) == 1 and content[0]["type"] == "text":
            entry["content"] = content[0]["text"]
    return "\n\n".join(s for s in system if s), converted


def to_anthropic_tool(tool: ToolSpec) -> JSON:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}


def _describe(exc: anthropic.AnthropicError | httpx2.HTTPError, *, streaming: bool) -> str:
    if isinstance(exc, anthropic.APIStatusError) and exc.status_code >= 400:
        return failure_message(LLM, status_code=exc.status_code)
    # An `error` event inside a 200 stream (e.g. overloaded_error mid-answer) surfaces as a
    # status error carrying the 200; for the client the stream broke off.
    return failure_message(
        LLM,
        timed_out=isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException),
        streaming=streaming or isinstance(exc, anthropic.APIStatusError),
    )


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, *, api_key: str, base_url: str | None = None) -> None:
        self.api_key = api_key
        self.base_url = base_url

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | ToolCallRequest | Usage]:
        system, messages = to_anthropic_messages(request.messages)
        params: JSON = {
            "model": request.model,
            "max_tokens": settings.ANTHROPIC_MAX_TOKENS,
            "messages": messages,
        }
        if system:
            params["system"] = system
        # No temperature: API version 2026-10-21, which this SDK speaks, refuses every sampling
        # parameter with a 400, so a character's temperature is refused in the admin instead.
        if request.tools:
            params["tools"] = [to_anthropic_tool(t) for t in request.tools]
        params.update(request.options)
        # tool_use blocks by content index: id and name at block start, then JSON pieces.
        calls: dict[int, dict[str, str]] = {}
        # message_start counts the input; each message_delta the output so far (cumulative).
        tokens_in: int | None = None
        tokens_out = 0
        streaming = stopped = False
        try:
            stream = await _client(self.base_url, self.api_key).messages.create(
                stream=True, **params
            )
            streaming = True
            async with stream:
                async for event in stream:
                    stopped = stopped or event.type == "message_stop"
                    if event.type == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta" and delta.text:
                            yield delta.text
                        elif delta.type == "input_json_delta" and event.index in calls:
                            calls[event.index]["args"] += delta.partial_json
                    elif event.type == "content_block_start":
                        block = event.content_block
                        if block.type == "tool_use":
                            calls[event.index] = {"id": block.id, "name": block.name, "args": ""}
                    elif event.type == "message_start":
                        tokens_in = _input_tokens(event.message.usage)
                    elif event.type == "message_delta":
                        tokens_out = event.usage.output_tokens
                        if event.delta.stop_reason == "max_tokens":
                            logger.warning(
                                "Claude stopped at ANTHROPIC_MAX_TOKENS=%s; the answer is cut "
                                "short",
                                settings.ANTHROPIC_MAX_TOKENS,
                            )
        # Once the events flow, the SDK lets its HTTP client's errors (a dropped connection,
        # a read timeout) through unwrapped.
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            status = exc.status_code if isinstance(exc, anthropic.APIStatusError) else None
            body = exc.body if isinstance(exc, anthropic.APIError) else None
            message = _describe(exc, streaming=streaming)
            raise LLMError(message, status_code=status, body=body) from exc
        except ValueError as exc:  # an event that is not JSON
            raise broke_off() from exc
        if not stopped:
            raise broke_off()
        for _, call in sorted(calls.items()):
            yield ToolCallRequest(id=call["id"], name=call["name"], arguments=call["args"])
        if tokens_in is not None:
            yield Usage(tokens_in, tokens_out)


def _input_tokens(usage: anthropic.types.Usage) -> int:
    """All the input a call was billed for: Messages API counts tokens read from or written to
    the prompt cache apart from `input_tokens`."""
    cached = (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
    return usage.input_tokens + cached
