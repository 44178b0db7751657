"""Dify as the LLM: a Dify chat app answers, keeping the conversation on its side.

Only the newest user message is sent, with the Dify `conversation_id` this context got on its
first turn (kept in the context's provider state), so Dify's own memory, prompts, knowledge and
tools apply. Images go as remote URLs, or are uploaded first when they are `data:` URLs.
Streaming (`message`/`agent_message` events); retries with backoff on 429/5xx and connection
errors before the stream starts; timeouts from the LLM settings.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import AsyncIterator, Callable

import httpx
from django.conf import settings

from .base import LLMError, LLMRequest, ToolCallRequest, Usage
from .sdk import LLM, broke_off, failure_message, http_failure_message, loop_client

DIFY_CLOUD_URL = "https://api.dify.ai/v1"
STATE_KEY = "dify_conversation_id"
RETRYABLE = {408, 409, 429, 500, 502, 503, 504}


def _client() -> httpx.AsyncClient:
    return loop_client(
        ("dify",),
        lambda: httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.LLM_TIMEOUT_SECONDS, connect=settings.LLM_CONNECT_TIMEOUT_SECONDS
            )
        ),
    )


class DifyProvider:
    name = "dify"

    def __init__(self, *, api_key: str, base_url: str | None = None) -> None:
        self.api_key = api_key
        self.base_url = (base_url or DIFY_CLOUD_URL).rstrip("/")

    async def stream(self, request: LLMRequest) -> AsyncIterator[str | ToolCallRequest | Usage]:
        question = next((m for m in reversed(request.messages) if m.role == "user"), None)
        if question is None:
            return
        user = request.user or "avatarsite"
        body = {
            "inputs": {},
            "query": question.content,
            "response_mode": "streaming",
            "user": user,
            "conversation_id": request.state.get(STATE_KEY, ""),
            "files": [await self._file(f, user) for f in question.files],
        }
        streaming = ended = False
        usage: Usage | None = None
        try:
            response = await self._send(
                lambda: _client().build_request(
                    "POST", f"{self.base_url}/chat-messages", headers=self._headers(), json=body
                ),
                stream=True,
            )
            streaming = True
            try:
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    event = json.loads(line[5:])
                    if not isinstance(event, dict):
                        raise ValueError("a Dify event is a JSON object")
                    kind = event.get("event")
                    ended = ended or kind == "message_end"
                    if kind in ("message", "agent_message") and event.get("answer"):
                        yield event["answer"]
                    elif kind == "message_end":
                        if event.get("conversation_id"):
                            request.state[STATE_KEY] = event["conversation_id"]
                        usage = _usage(event.get("metadata"))
                    elif kind == "error":
                        status = event.get("status") or 500
                        message = failure_message(LLM, status_code=status)
                        raise LLMError(message, status_code=status, body=event)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise LLMError(http_failure_message(LLM, exc, streaming=streaming)) from exc
        except ValueError as exc:
            raise LLMError(failure_message(LLM, streaming=streaming)) from exc
        if not ended:
            raise broke_off()
        if usage is not None:
            yield usage

    async def _file(self, file: dict[str, str], user: str) -> dict[str, str]:
        """Dify's file reference for an image: by URL, or uploaded when it is a data: URL."""
        url = file["url"]
        if not url.startswith("data:"):
            return {"type": "image", "transfer_method": "remote_url", "url": url}
        header, _, data = url.partition(",")
        mime = header.removeprefix("data:").split(";")[0] or "image/png"
        image = (f"image.{mime.split('/')[-1]}", base64.b64decode(data), mime)
        response = await self._send(
            lambda: _client().build_request(
                "POST",
                f"{self.base_url}/files/upload",
                headers=self._headers(),
                data={"user": user},
                files={"file": image},
            ),
            stream=False,
        )
        upload_id = response.json()["id"]
        return {"type": "image", "transfer_method": "local_file", "upload_file_id": upload_id}

    async def _send(self, build: Callable[[], httpx.Request], *, stream: bool) -> httpx.Response:
        """Send with bounded retries and jittered exponential backoff on 429/5xx and connection
        errors; a streamed response is returned as soon as its status is known."""
        last = settings.LLM_MAX_RETRIES
        for attempt in range(last + 1):
            try:
                response = await _client().send(build(), stream=stream)
            except (httpx.ConnectError, httpx.TimeoutException):
                if attempt == last:
                    raise
            else:
                if response.status_code < 400:
                    return response
                if stream:
                    await response.aclose()
                if response.status_code not in RETRYABLE or attempt == last:
                    response.raise_for_status()
            await asyncio.sleep(_backoff(attempt))
        raise AssertionError("unreachable")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def _usage(metadata: object) -> Usage | None:
    """The counts in message_end's `metadata.usage`, when the app's model reported both."""
    usage = metadata.get("usage") if isinstance(metadata, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    return None if prompt is None or completion is None else Usage(prompt, completion)


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _backoff(attempt: int) -> float:
    return min(8.0, 0.5 * 2**attempt) * random.uniform(0.75, 1.0)
