"""Between the user's words and the LLM: validators, merging, wake words, timestamps."""

from __future__ import annotations

import zoneinfo
from datetime import datetime, timedelta

import pytest

from characters.models import Character
from conversations.models import Message, TurnRecord
from conversations.pipeline.shaping import MERGE_PREFIX, TIMESTAMP_PREFIX
from tests.conftest import AsgiServer
from tests.fakes.openai_server import FakeOpenAI
from tests.sse import SSEResult, post_sse

pytestmark = pytest.mark.django_db(transaction=True)


def say(server: AsgiServer, key: str, text: str, **fields: object) -> SSEResult:
    body = {"type": "start", "session_id": "s1", "user_id": "u1", "text": text, **fields}
    return post_sse(f"{server.url}/chat", body, key=key)


def test_a_validator_refuses_before_the_llm(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    result = say(asgi_server, api_key, "Tell me a secret")

    assert result.types == ["canceled"]  # AIAvatarKit's spelling for a refused request
    assert result.events[0]["metadata"] == {"reason": "Let's not talk about secrets."}
    assert fake_llm.requests == []
    record = TurnRecord.objects.get()
    assert (record.status, record.error) == ("cancelled", "Let's not talk about secrets.")
    assert not Message.objects.exists()


def test_it_merges_a_request_that_follows_closely(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    character.merge_window_seconds = 60
    character.save()

    say(asgi_server, api_key, "I would like")
    merged = say(asgi_server, api_key, "a pizza")
    say(asgi_server, api_key, "and a salad", session_id="s2")

    expected = f"{MERGE_PREFIX}I would like\na pizza"
    assert merged.events[0]["metadata"] == {"request_text": expected, "recognized_text": "a pizza"}
    assert fake_llm.requests[1]["messages"][-1]["content"] == expected
    assert fake_llm.requests[2]["messages"][-1]["content"] == "and a salad"


def test_it_answers_only_once_woken(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    character.wake_words = "Mia, hey you"
    character.save()

    asleep = say(asgi_server, api_key, "What time is it?")
    woken = say(asgi_server, api_key, "Hey you, what time is it?")
    awake = say(asgi_server, api_key, "And the date?")

    assert asleep.types == ["start", "final"] and asleep.events[-1]["text"] == ""
    assert woken.types[-1] == awake.types[-1] == "final"
    assert [r["messages"][-1]["content"] for r in fake_llm.requests] == [
        "Hey you, what time is it?",
        "And the date?",
    ]
    assert TurnRecord.objects.filter(status="cancelled").count() == 1
    assert Message.objects.count() == 4


def test_it_tells_the_llm_the_local_time_now_and_then(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    character.timestamp_interval_seconds = 3600
    character.timezone = "Asia/Tokyo"
    character.save()
    before = datetime.now(zoneinfo.ZoneInfo("Asia/Tokyo"))

    say(asgi_server, api_key, "Good morning")
    say(asgi_server, api_key, "Still there?")

    first = fake_llm.requests[0]["messages"][-1]["content"]
    stamp, _, words = first.removeprefix(TIMESTAMP_PREFIX).partition("\n\n")
    sent = datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S").replace(tzinfo=before.tzinfo)
    assert first.startswith(TIMESTAMP_PREFIX) and words == "Good morning"
    assert timedelta(seconds=-1) <= sent - before.replace(microsecond=0) < timedelta(minutes=1)
    assert fake_llm.requests[1]["messages"][-1]["content"] == "Still there?"
