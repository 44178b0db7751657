"""Redis unreachable: one server process keeps answering chat, its sessions coordinated in
process (conversations/pipeline/sessions.py); only other processes miss interruptions."""

from __future__ import annotations

import pytest
from pytest_django.fixtures import Settings

from characters.models import Character
from conversations.models import Message, TurnRecord
from tests.fakes.openai_server import FakeOpenAI
from tests.inprocess import InProcessApp

pytestmark = pytest.mark.django_db

NOBODY_LISTENS = "redis://127.0.0.1:1/0"


def test_a_single_process_keeps_answering_with_redis_unreachable(
    app: InProcessApp, settings: Settings, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [NOBODY_LISTENS]},
        }
    }
    body = {"type": "start", "session_id": "s1", "user_id": "u1", "text": "Hello"}

    first = app.post_sse("/chat", body, key=api_key)
    context_id = first.events[0]["context_id"]
    second = app.post_sse("/chat", {**body, "context_id": context_id}, key=api_key)

    assert first.types[-1] == second.types[-1] == "final"
    assert list(TurnRecord.objects.values_list("status", flat=True)) == ["completed"] * 2
    assert Message.objects.count() == 4
