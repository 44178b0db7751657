"""A small SSE client for tests: POST, then read `data:` events and `:` comments, over a real
socket (`post_sse`) or to the app in this process (tests/inprocess.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class SSEResult:
    status: int
    headers: httpx.Headers
    events: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    body: Any = None  # the JSON body of a non-streaming (error) response

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == type_]

    @property
    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def read(self, lines: Iterable[str]) -> SSEResult:
        """Take the stream's events and comments from its lines."""
        for line in lines:
            if line.startswith("data:"):
                self.events.append(json.loads(line[5:]))
            elif line.startswith(":"):
                self.comments.append(line)
        return self


def post_sse(
    url: str,
    body: Any,
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
    timeout: float = 15.0,
) -> SSEResult:
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if key:
        all_headers["Authorization"] = f"Bearer {key}"
    payload = content if content is not None else json.dumps(body).encode()
    with (
        httpx.Client(timeout=timeout) as client,
        client.stream("POST", url, content=payload, headers=all_headers) as response,
    ):
        result = SSEResult(status=response.status_code, headers=response.headers)
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            response.read()
            result.body = response.json()
            return result
        return result.read(response.iter_lines())
