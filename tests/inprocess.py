"""The app in the test's own process: Django's async test client on the same URLs, views and
turn pipeline the live server runs, configured as the tests' daphne is (tests.conftest
SERVER_ENV), with no server process and no socket.

Requests run under async_to_sync from the (sync) test, so the app's database work happens on
the test's thread, inside its transaction: these tests need no transactional database.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
from asgiref.sync import async_to_sync
from django.http import StreamingHttpResponse
from django.test import AsyncClient

from tests.sse import SSEResult


@dataclass(frozen=True)
class InProcessApp:
    url: str = ""  # paths stand alone: f"{app.url}/chat" is "/chat"

    def post_sse(
        self,
        path: str,
        body: Any,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> SSEResult:
        """As tests.sse.post_sse: POST JSON (or `content`), then the SSE events, or the JSON
        error body."""
        all_headers = dict(headers or {})
        if key:
            all_headers["Authorization"] = f"Bearer {key}"
        payload = content if content is not None else json.dumps(body).encode()
        return async_to_sync(_post_sse)(path, payload, all_headers)


async def _post_sse(path: str, payload: bytes, headers: dict[str, str]) -> SSEResult:
    client = AsyncClient(raise_request_exception=False)
    response = await client.post(
        path, data=payload, content_type="application/json", headers=headers
    )
    result = SSEResult(status=response.status_code, headers=httpx.Headers(dict(response.items())))
    if not response.get("Content-Type", "").startswith("text/event-stream"):
        result.body = json.loads(response.content)
        return result
    assert isinstance(response, StreamingHttpResponse)
    streamed = b"".join([part async for part in response.streaming_content])
    # SSE lines end at CR, LF or CRLF only (str.splitlines also cuts at U+2028, U+0085...).
    return result.read(re.split(r"\r\n|\r|\n", streamed.decode()))
