"""Life in conversation, through `/chat` in process: the system prompt, and the tools. The clock
is fixed, so the character's date never turns over during a test."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from django.utils import timezone

from characters.models import Character, DailySchedule, Diary
from conversations.models import EndUser
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp

pytestmark = pytest.mark.django_db

# Noon UTC: already the next day on Kiritimati (UTC+14).
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timezone, "now", lambda: NOW)


def hello(text: str = "Hello", **fields: object) -> dict[str, object]:
    return {"type": "start", "session_id": "s1", "user_id": "u1", "text": text, **fields}


def call(name: str, arguments: dict[str, object]) -> ScriptedReply:
    return ScriptedReply(
        tool_calls=[{"id": "call_1", "name": name, "arguments": json.dumps(arguments)}]
    )


def tool_results(events: list[dict]) -> list[dict]:
    return [
        e["metadata"]["tool_call"]["result"]["data"]
        for e in events
        if e["type"] == "tool_call" and e["metadata"]["tool_call"].get("result")
    ]


def local_today(character: Character) -> date:
    return character.local_now(timezone.now()).date()


@pytest.fixture
def kiritimati(character: Character) -> Character:
    """UTC+14: its date differs from the server's (UTC) for most of the day."""
    character.timezone = "Pacific/Kiritimati"
    character.save()
    return character


def test_the_system_prompt_carries_the_days_schedule_on_the_characters_clock(
    app: InProcessApp, kiritimati: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    today = local_today(kiritimati)
    for offset in (-1, 0, 1):
        DailySchedule.objects.create(
            character=kiritimati,
            schedule_date=today + timedelta(days=offset),
            content=f"| 9:00-10:00 | schedule of {today + timedelta(days=offset)} |",
        )

    app.post_sse("/chat", hello(), key=api_key)

    system = fake_llm.requests[0]["messages"][0]["content"]
    said_today = date.fromisoformat(system.rsplit("It is now ", 1)[1][:10])
    assert said_today == today == date(2026, 1, 16)
    assert f"schedule of {said_today} |" in system
    assert system.count("schedule of") == 1
    assert system.startswith("You are Mia.") and "(Pacific/Kiritimati)" in system


def test_an_admin_edit_shows_on_the_next_turn(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    app.post_sse("/chat", hello(), key=api_key)
    character.persona = "You are Mia, now a pirate."
    character.save()
    DailySchedule.objects.create(
        character=character, schedule_date=local_today(character), content="| sail |"
    )

    app.post_sse("/chat", hello(), key=api_key)

    first, second = (r["messages"][0]["content"] for r in fake_llm.requests)
    assert "pirate" not in first and "| sail |" not in first
    assert second.startswith("You are Mia, now a pirate.") and "| sail |" in second


def test_update_username_persists_and_the_next_turn_uses_it(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(call("update_username", {"username": "  Ada  "}), ScriptedReply(text="Hi Ada!"))

    result = app.post_sse("/chat", hello("Call me Ada"), key=api_key)
    app.post_sse("/chat", hello("Who am I?"), key=api_key)

    assert tool_results(result.events) == [{"username": "Ada"}]
    assert EndUser.objects.get().display_name == "Ada"
    assert "The user's name is Ada." not in fake_llm.requests[0]["messages"][0]["content"]
    assert "The user's name is Ada." in fake_llm.requests[2]["messages"][0]["content"]


def test_update_username_refuses_a_link_and_says_so(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(
        call("update_username", {"username": "https://spam.example"}),
        ScriptedReply(text="I can't use that."),
    )

    result = app.post_sse("/chat", hello(), key=api_key)

    (answer,) = tool_results(result.events)
    assert answer["error"].startswith("Not saved") and answer["username"] == ""
    assert EndUser.objects.get().display_name == ""


def test_get_diary_returns_the_day_with_its_schedule_and_never_the_future(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    today = local_today(character)
    yesterday, tomorrow = today - timedelta(days=1), today + timedelta(days=1)
    for day in (yesterday, tomorrow):
        DailySchedule.objects.create(character=character, schedule_date=day, content=f"s {day}")
        Diary.objects.create(character=character, diary_date=day, content=f"d {day}")
    fake_llm.script(
        call("get_diary", {"diary_date": "yesterday"}),
        ScriptedReply(text="I remember."),
        call("get_diary", {"diary_date": tomorrow.isoformat()}),
        ScriptedReply(text="Not yet."),
        call("get_diary", {"diary_date": "2020-02-02"}),
        ScriptedReply(text="Nothing."),
        call("get_diary", {"diary_date": "last week"}),
        ScriptedReply(text="Which day?"),
    )

    answers = [
        tool_results(app.post_sse("/chat", hello(), key=api_key).events)[0] for _ in range(4)
    ]

    assert answers[0] == {"diary": f"d {yesterday}", "schedule": f"s {yesterday}"}
    assert answers[1] == answers[2] == {"message": "No entries."}
    assert "YYYY-MM-DD" in answers[3]["error"]


def test_get_diary_reads_a_range_of_up_to_a_week(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    today = local_today(character)
    start = today - timedelta(days=3)
    Diary.objects.create(character=character, diary_date=start, content="first")
    DailySchedule.objects.create(character=character, schedule_date=today, content="now")
    fake_llm.script(
        call("get_diary", {"diary_date": start.isoformat(), "end_date": "today"}),
        ScriptedReply(text="Here."),
    )

    result = app.post_sse("/chat", hello(), key=api_key)

    assert tool_results(result.events) == [
        {
            "entries": [
                {"date": start.isoformat(), "diary": "first"},
                {"date": today.isoformat(), "schedule": "now"},
            ]
        }
    ]


def test_the_character_tools_are_offered_and_can_be_switched_off(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    app.post_sse("/chat", hello(), key=api_key)
    character.disabled_tools = ["get_diary"]
    character.save()
    app.post_sse("/chat", hello(), key=api_key)

    offered = [[t["function"]["name"] for t in r["tools"]] for r in fake_llm.requests]
    assert {"get_diary", "update_username"} <= set(offered[0])
    assert "get_diary" not in offered[1] and "update_username" in offered[1]
