"""Shared context (docs/turn.md#shared-context): what staff or tools add reaches every
conversation of the character, within its retention, and nothing of another character's."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from characters.models import Character
from conversations.admission import Caller, admit, find_character
from conversations.models import SharedMessage
from conversations.pipeline import turn as stages
from conversations.pipeline.events import TurnFinished, TurnRequest
from conversations.shared_context import ashare, share, shared_messages
from conversations.tools import Tool, ToolContext, registry
from tests.characters.test_characters import _character_form
from tests.conversations.test_turn_stages import collect
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp

pytestmark = pytest.mark.django_db


def request_of(character: Character, user_id: str, text: str) -> TurnRequest:
    caller = Caller(tenant_id=character.tenant_id)
    loaded = find_character(caller, character.slug)
    session, context = admit(caller, loaded, channel="http", user_id=user_id, session_id=user_id)
    return session.turn(context, text=text)


def system_sent(request: dict[str, Any]) -> str:
    return str(request["messages"][0]["content"])


def test_a_shared_message_reaches_the_turns_of_two_users(
    app: InProcessApp, character: Character, fake_llm: FakeOpenAI
) -> None:
    other = Character.objects.create(slug="leo", name="Leo", llm_base_url=fake_llm.base_url)
    share(character, "The cherry blossoms opened in Kyoto today.")
    share(other, "Leo's own news.")

    for user in ("alice", "bob"):
        events = collect(stages.run_turn(request_of(character, user, "Any news?")))
        assert isinstance(events[-1], TurnFinished)

    assert len(fake_llm.requests) == 2
    for request in fake_llm.requests:
        assert "The cherry blossoms opened in Kyoto today." in system_sent(request)
        assert "Leo's own news." not in system_sent(request)


def test_a_tool_shares_what_the_character_did_with_the_next_users_turn(
    app: InProcessApp,
    character: Character,
    fake_llm: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def went_out(context: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
        await ashare(context.character, f"I went to {arguments['place']} today.")
        return {"ok": True}

    tool = Tool("go_out", "Go somewhere.", {"type": "object", "properties": {}}, went_out)
    monkeypatch.setitem(registry._tools, tool.name, tool)
    fake_llm.script(
        ScriptedReply(tool_calls=[{"name": "go_out", "arguments": {"place": "the sea"}}]),
        ScriptedReply(text="I am back."),
    )

    collect(stages.run_turn(request_of(character, "alice", "Go out!")))
    collect(stages.run_turn(request_of(character, "bob", "What did you do?")))

    assert SharedMessage.objects.get().source == SharedMessage.Source.TOOL
    assert "I went to the sea today." in system_sent(fake_llm.requests[-1])
    assert "I went to the sea today." not in system_sent(fake_llm.requests[0])


def test_retention_keeps_the_latest_within_the_age_limit_oldest_first(
    character: Character,
) -> None:
    character.shared_context_size = 2
    character.shared_context_max_age_hours = 24
    character.save()
    stale = share(character, "old")
    SharedMessage.objects.filter(pk=stale.pk).update(
        created_at=timezone.now() - timedelta(hours=30)
    )

    assert shared_messages(character) == []
    for text in ("one", "two", "three"):
        share(character, text)

    assert [m.content for m in shared_messages(character)] == ["two", "three"]
    assert list(SharedMessage.objects.order_by("created_at").values_list("content", flat=True)) == [
        "two",
        "three",
    ]


def test_a_character_keeping_no_shared_context_sees_none(character: Character) -> None:
    share(character, "news")
    character.shared_context_size = 0
    character.save()

    assert shared_messages(character) == []


def test_staff_add_shared_messages_on_the_character_page_within_its_retention(
    admin_client: Client,
) -> None:
    form = _character_form(
        shared_context_size="1",
        **{
            "shared_messages-TOTAL_FORMS": "2",
            "shared_messages-0-content": "The festival is on Sunday.",
            "shared_messages-1-content": "It rained all morning.",
        },
    )

    page = admin_client.post("/admin/characters/character/add/", form)

    assert page.status_code == 302
    kept = SharedMessage.objects.get()
    assert kept.character.slug == "kai" and kept.source == SharedMessage.Source.STAFF
