"""Fixtures for character life: a character with a usual week, and scripted LLM answers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from characters.models import Character, WeeklySchedule
from tests.conftest import LLM_KEY_VARIABLE
from tests.fakes.openai_server import FAKE_API_KEY, FakeOpenAI, ScriptedReply

# Long before any date the tests use, so no test meets the "not before creation" rule by chance.
LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)
GARBLED = "Sure! Here is the schedule you asked for."


def answers(text: str, repeat: int = 1) -> ScriptedReply:
    # One delta per answer: these tests are about what is asked and saved, not streaming.
    return ScriptedReply(chunks=[text], repeat=repeat)


def sent_text(request: dict[str, object]) -> str:
    """Everything one recorded LLM request said, to search for expected inputs."""
    messages = request["messages"]
    assert isinstance(messages, list)
    return "\n".join(str(m["content"]) for m in messages)


def make_character(
    fake: FakeOpenAI, slug: str, timezone: str = "Asia/Tokyo", **fields: object
) -> Character:
    character = Character.objects.create(
        slug=slug,
        name=slug.capitalize(),
        persona=f"You are {slug.capitalize()}, a baker who loves the sea.",
        timezone=timezone,
        llm_model="gpt-4o-mini",
        llm_base_url=fake.base_url,
        llm_api_key_env=LLM_KEY_VARIABLE,
        **fields,
    )
    Character.objects.filter(pk=character.pk).update(created_at=LONG_AGO)
    character.refresh_from_db()
    WeeklySchedule.objects.create(character=character, content=f"| week of {slug} |")
    return character


@pytest.fixture(autouse=True)
def llm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generation runs in this process (and its worker threads): give it the fake's key, as
    the server tests give it to daphne's environment."""
    monkeypatch.setenv(LLM_KEY_VARIABLE, FAKE_API_KEY)


@pytest.fixture
def living(fake_llm: FakeOpenAI) -> Character:
    """A character in Tokyo with a usual week, created long ago."""
    return make_character(fake_llm, "hana")
