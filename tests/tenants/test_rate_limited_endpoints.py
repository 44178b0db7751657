"""Per-key rate limits at the endpoints: 429 with Retry-After in each API's own error shape,
streams counted while open, and the counts shared by server processes on Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import AsyncClient, Client

from characters.models import Character
from conversations import rate_limits
from conversations.models import ApiKey
from tests.conftest import AsgiServer, require_service, server_env
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.processes import start_daphne, stop_process


@pytest.fixture(autouse=True)
def fresh_storage() -> Iterator[None]:
    rate_limits._storage.cache_clear()  # this test's settings, not a previous test's
    yield
    rate_limits._storage.cache_clear()


def limited_key(**limits: int) -> str:
    key, raw = ApiKey.issue("limited")
    ApiKey.objects.filter(pk=key.pk).update(**limits)
    return raw


def post(path: str, key: str, body: dict[str, Any]) -> Any:
    return Client().post(
        path, json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )


@pytest.mark.django_db
def test_each_api_answers_429_in_its_own_shape(character: Character) -> None:
    key = limited_key(requests_per_minute=1)
    # A request with a body the endpoint refuses still counts: the key is checked first.
    assert Client().get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200

    aiavatar = post("/chat", key, {"type": "start", "session_id": "s", "text": "Hi"})
    dify = post("/chat-messages", key, {"query": "Hi", "user": "u"})
    openai = post("/v1/chat/completions", key, {"model": "mia", "messages": []})

    for response in (aiavatar, dify, openai):
        assert response.status_code == 429
        assert 1 <= int(response["Retry-After"]) <= 60
    assert "1 requests per minute" in aiavatar.json()["detail"]
    assert dify.json()["status"] == 429 and dify.json()["code"] == "too_many_requests"
    assert openai.json()["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.django_db(transaction=True)
async def test_open_streams_are_counted_until_they_end(
    character: Character, fake_llm: FakeOpenAI
) -> None:
    key = await sync_to_async(limited_key)(concurrent_streams=1)
    fake_llm.script(ScriptedReply(text="One."), ScriptedReply(text="Two."))
    client = AsyncClient()

    def ask(session: str) -> Any:
        body = {"type": "start", "session_id": session, "text": "Hi"}
        headers = {"Authorization": f"Bearer {key}"}
        return client.post("/chat", body, content_type="application/json", headers=headers)

    streaming = await ask("a")  # its SSE stream is open until read to the end
    refused = await ask("b")
    events = [chunk async for chunk in streaming.streaming_content]
    slot_back = await _eventually_admitted(ask)

    assert streaming.status_code == 200 and b'"final"' in b"".join(events)
    assert refused.status_code == 429 and refused["Retry-After"] == "1"
    assert "1 at a time" in json.loads(refused.content)["detail"]
    assert slot_back.status_code == 200


async def _eventually_admitted(ask: Any) -> Any:
    """The slot is handed back in a thread as the stream closes: wait for it, boundedly."""
    for attempt in range(100):
        response = await ask(f"c{attempt}")
        if response.status_code != 429:
            [_ async for _ in response.streaming_content]
            return response
    raise AssertionError("the stream slot never came back")


@pytest.fixture
def second_server(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[str]:
    require_service("Redis (REDIS_URL), to share rate limits", bool(settings.REDIS_URL))
    process, url = start_daphne(server_env(fake_openai), tmp_path / "second.log")
    try:
        yield url
    finally:
        stop_process(process)


@pytest.mark.django_db(transaction=True)
def test_limits_hold_across_server_processes_on_redis(
    asgi_server: AsgiServer, second_server: str, character: Character
) -> None:
    key = limited_key(requests_per_minute=3)
    headers = {"Authorization": f"Bearer {key}"}

    statuses = [
        httpx.get(f"{url}/v1/models", headers=headers, timeout=30).status_code
        for url in (asgi_server.url, second_server, asgi_server.url, second_server)
    ]
    refused = httpx.get(f"{second_server}/v1/models", headers=headers, timeout=30)

    assert statuses == [200, 200, 200, 429]
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
