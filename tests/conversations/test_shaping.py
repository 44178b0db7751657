"""Between the user's words and the LLM: validators, merging, wake words, timestamps; `/chat`
in process."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.utils import timezone

from characters.models import Character
from conversations.models import Message, TurnRecord
from conversations.pipeline.shaping import MERGE_PREFIX, TIMESTAMP_PREFIX
from tests.fakes.openai_server import FakeOpenAI
from tests.inprocess import InProcessApp
from tests.sse import SSEResult

pytestmark = pytest.mark.django_db


def say(app: InProcessApp, key: str, text: str, **fields: object) -> SSEResult:
    body = {"type": "start", "session_id": "s1", "user_id": "u1", "text": text, **fields}
    return app.post_sse("/chat", body, key=key)


def test_a_validator_refuses_before_the_llm(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    result = say(app, api_key, "Tell me a secret")

    assert result.types == ["canceled"]  # AIAvatarKit's spelling for a refused request
    assert result.events[0]["metadata"] == {"reason": "Let's not talk about secrets."}
    assert fake_llm.requests == []
    record = TurnRecord.objects.get()
    assert (record.status, record.error) == ("cancelled", "Let's not talk about secrets.")
    assert not Message.objects.exists()


def test_it_merges_a_request_that_follows_closely(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    character.merge_window_seconds = 60
    character.save()

    say(app, api_key, "I would like")
    merged = say(app, api_key, "a pizza")
    say(app, api_key, "and a salad", session_id="s2")

    expected = f"{MERGE_PREFIX}I would like\na pizza"
    assert merged.events[0]["metadata"] == {"request_text": expected, "recognized_text": "a pizza"}
    assert fake_llm.requests[1]["messages"][-1]["content"] == expected
    assert fake_llm.requests[2]["messages"][-1]["content"] == "and a salad"


def test_it_answers_only_once_woken(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    character.wake_words = "Mia, hey you"
    character.save()

    asleep = say(app, api_key, "What time is it?")
    woken = say(app, api_key, "Hey you, what time is it?")
    awake = say(app, api_key, "And the date?")

    assert asleep.types == ["start", "final"] and asleep.events[-1]["text"] == ""
    assert woken.types[-1] == awake.types[-1] == "final"
    assert [r["messages"][-1]["content"] for r in fake_llm.requests] == [
        "Hey you, what time is it?",
        "And the date?",
    ]
    assert TurnRecord.objects.filter(status="cancelled").count() == 1
    assert Message.objects.count() == 4


def test_it_tells_the_llm_the_local_time_now_and_then(
    app: InProcessApp,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    character.timestamp_interval_seconds = 3600
    character.timezone = "Asia/Tokyo"
    character.save()
    now = datetime(2026, 1, 15, 12, 0, 5, tzinfo=UTC)
    monkeypatch.setattr(timezone, "now", lambda: now)

    say(app, api_key, "Good morning")
    say(app, api_key, "Still there?")

    first = fake_llm.requests[0]["messages"][-1]["content"]
    stamp, _, words = first.removeprefix(TIMESTAMP_PREFIX).partition("\n\n")
    assert first.startswith(TIMESTAMP_PREFIX) and words == "Good morning"
    assert stamp == "2026/01/15 21:00:05"  # noon and five seconds UTC, on Tokyo's clock
    assert fake_llm.requests[1]["messages"][-1]["content"] == "Still there?"
