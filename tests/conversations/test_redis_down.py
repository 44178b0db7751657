"""Redis unreachable: one server process keeps answering chat, its sessions coordinated in
process (conversations/pipeline/sessions.py); only other processes miss interruptions.

Everything REDIS_URL configures points at a port nobody listens on, as the settings make it
(our channel layer, the cache of session settings and Dify task ids, the rate limits' storage),
and the key has limits, so each of those paths meets the outage."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_django.fixtures import Settings

from characters.models import Character
from conversations import rate_limits
from conversations.models import ApiKey, Message, TurnRecord
from tests.fakes.openai_server import FakeOpenAI
from tests.inprocess import InProcessApp

pytestmark = pytest.mark.django_db

NOBODY_LISTENS = "redis://127.0.0.1:1/0"


@pytest.fixture
def redis_unreachable(settings: Settings) -> Iterator[None]:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_app.layers.OutageTolerantRedisChannelLayer",
            "CONFIG": {"hosts": [NOBODY_LISTENS]},
        }
    }
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": NOBODY_LISTENS,
        }
    }
    settings.RATE_LIMIT_STORAGE_URL = NOBODY_LISTENS
    rate_limits._storage.cache_clear()
    try:
        yield
    finally:
        rate_limits._storage.cache_clear()


@pytest.mark.usefixtures("redis_unreachable")
def test_a_single_process_keeps_answering_with_redis_unreachable(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    ApiKey.objects.update(requests_per_minute=100, concurrent_streams=5)
    body = {"type": "start", "session_id": "s1", "user_id": "u1", "text": "Hello"}

    first = app.post_sse("/chat", body, key=api_key)
    assert first.events, (first.status, first.body)
    context_id = first.events[0]["context_id"]
    second = app.post_sse("/chat", {**body, "context_id": context_id}, key=api_key)
    dify = app.post_sse(
        "/chat-messages",
        {"query": "Hi", "user": "u2", "inputs": {}, "response_mode": "streaming"},
        key=api_key,
    )
    # Stopping needs the task ids the cache keeps: refused as unavailable, in Dify's shape.
    stop = app.post_sse(
        f"/chat-messages/{dify.events[0]['task_id']}/stop", {"user": "u2"}, key=api_key
    )
    openai = app.post_sse(
        "/v1/chat/completions",
        {"model": character.slug, "messages": [{"role": "user", "content": "Hi"}]},
        key=api_key,
    )

    assert first.types[-1] == second.types[-1] == "final", (first.events, second.events)
    assert any(chunk["audio_data"] for chunk in second.of_type("chunk"))  # spoken too
    assert dify.events[-1]["event"] == "message_end", dify.events
    assert (stop.status, stop.body["code"]) == (503, "service_unavailable"), stop.body
    assert openai.status == 200 and openai.body["choices"][0]["message"]["content"], openai.body
    assert list(TurnRecord.objects.values_list("status", flat=True)) == ["completed"] * 4
    assert Message.objects.count() == 8
