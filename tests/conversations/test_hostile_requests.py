"""200 hostile requests against a daphne whose database pool holds 5 connections, then a normal
turn: a request that fails, at the wire or mid-stream, must give its connection back.

Before the text rule, each `/start` with a lone surrogate in `session_id` failed mid-stream
and kept one pooled connection; the sixth left every later request waiting for the pool.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection

from characters.models import Character
from conversations.models import Message
from tests.conftest import require_service, server_env
from tests.fakes.openai_server import FakeOpenAI
from tests.processes import start_daphne, stop_process
from tests.sse import post_sse

pytestmark = pytest.mark.django_db(transaction=True)

POOL_SIZE = 5
HOSTILE_REQUESTS = 200
BAD_TEXTS = ["\udfff", "\ud800x", "a\x00b", "\x00"]


@pytest.fixture
def small_pool_server(fake_llm: FakeOpenAI, tmp_path: Path) -> Iterator[str]:
    require_service("PostgreSQL", connection.vendor == "postgresql")
    env = server_env(
        fake_llm,
        DATABASE_POOL_MIN_SIZE="1",
        DATABASE_POOL_MAX_SIZE=str(POOL_SIZE),
        DATABASE_POOL_TIMEOUT_SECONDS="5",
    )
    process, url = start_daphne(env, tmp_path / "daphne.log")
    try:
        yield url
    finally:
        stop_process(process)


def hostile() -> Iterator[tuple[str, str, bytes]]:
    """(method, path, body) without end: every field of every chat endpoint with a bad text,
    too-long ids, and query strings with a NUL."""
    bodies: dict[str, dict[str, Any]] = {
        "/start": {"type": "start", "session_id": "s", "user_id": "u"},
        "/chat": {"type": "start", "session_id": "s", "user_id": "u", "text": "hi"},
        "/chat-messages": {"query": "hi", "user": "u", "inputs": {"k": "v"}},
        "/v1/chat/completions": {
            "model": "mia",
            "messages": [{"role": "user", "content": "hi"}],
            "user": "u",
            "stream": True,
        },
        "/tts": {"text": "hi"},
    }
    cases: list[tuple[str, str, bytes]] = []
    for path, body in bodies.items():
        for field, bad in itertools.product(body, BAD_TEXTS):
            if isinstance(body[field], str):
                cases.append(("POST", path, json.dumps({**body, field: bad}).encode()))
        for field in ("session_id", "user_id", "user"):
            if field in body:
                cases.append(("POST", path, json.dumps({**body, field: "x" * 300}).encode()))
    for query in ("user_id=%00", "user_id=a%00b"):
        cases.append(("GET", f"/ws/sessions?{query}", b""))
    cases.append(("GET", "/v1/models?x=%00", b""))
    return itertools.cycle(cases)


def test_hostile_requests_leave_the_pool_whole(
    small_pool_server: str, character: Character, api_key: str
) -> None:
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    statuses: list[int] = []
    with httpx.Client(base_url=small_pool_server, headers=headers, timeout=30) as client:
        for method, path, body in itertools.islice(hostile(), HOSTILE_REQUESTS):
            response = client.request(method, path, content=body)
            assert response.status_code < 500, (path, body[:200], response.text[:300])
            assert response.headers["content-type"].startswith("application/json"), path
            statuses.append(response.status_code)
        health = client.get("/healthz")

    result = post_sse(
        f"{small_pool_server}/chat",
        {"type": "start", "session_id": "after", "user_id": "u", "text": "Hello"},
        key=api_key,
        timeout=30,
    )

    assert len(statuses) == HOSTILE_REQUESTS and set(statuses) <= {400, 404, 422}
    assert health.json()["checks"]["database"] == "ok"
    assert result.types[-1] == "final"
    assert Message.objects.count() == 2  # the normal turn only
