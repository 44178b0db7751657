"""Guardrails on requests and responses: block, replace, and keep the history clean."""

from __future__ import annotations

import pytest

from characters.models import Character
from conversations.models import Guardrail, Message, TurnRecord
from conversations.tools.guardrails import JUDGE_PROMPT
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp
from tests.sse import SSEResult

pytestmark = pytest.mark.django_db


def say(app: InProcessApp, key: str, text: str) -> SSEResult:
    body = {"type": "start", "session_id": "s1", "user_id": "u1", "text": text}
    return app.post_sse("/chat", body, key=key)


def guard(**fields: object) -> Guardrail:
    defaults = {"name": "ramen", "kind": Guardrail.Kind.PATTERN, "pattern": r"\bramen\b"}
    return Guardrail.objects.create(**{**defaults, **fields})


def flagged(result: SSEResult) -> list[dict]:
    return [c for c in result.of_type("chunk") if c["metadata"]["is_guardrail_triggered"]]


def test_a_blocked_request_gets_the_message_and_no_llm_call(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    guard(applies_to="request", action="block", message="I can't talk about food. Sorry!")

    result = say(app, api_key, "Where is good Ramen?")

    assert [c["text"] for c in flagged(result)] == ["I can't talk about food. ", "Sorry!"]
    assert result.events[-1]["text"] == "I can't talk about food. Sorry!"
    assert fake_llm.requests == []
    assert not Message.objects.exists()
    assert TurnRecord.objects.get().error == "Blocked by guardrail ramen"


def test_a_replaced_request_reaches_the_llm_and_history_corrected(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    guard(applies_to="request", action="replace", message="Tell me about noodles.")

    result = say(app, api_key, "ramen recipe please")

    assert not flagged(result)
    assert fake_llm.requests[0]["messages"][-1]["content"] == "Tell me about noodles."
    assert Message.objects.get(role="user").content == "Tell me about noodles."


def test_a_response_guardrail_corrects_and_the_history_keeps_the_correction(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    guard(applies_to="response", action="replace", message="Let's talk about something else.")
    fake_llm.script(ScriptedReply(text="Try the ramen downtown."))

    result = say(app, api_key, "Dinner ideas?")

    assert [c["text"] for c in flagged(result)] == ["Let's talk about something else."]
    assert Message.objects.get(role="assistant").content == "Let's talk about something else."


def test_an_llm_guardrail_asks_the_characters_llm(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    guard(
        name="medical",
        kind=Guardrail.Kind.LLM,
        pattern="",
        question="Does it ask for medical advice?",
        applies_to="request",
        action="block",
        message="Please ask a doctor.",
    )
    fake_llm.script(ScriptedReply(text="YES"))

    result = say(app, api_key, "What dose of aspirin should I take?")

    judge = fake_llm.requests[0]["messages"]
    assert judge[0] == {"role": "system", "content": JUDGE_PROMPT}
    assert "What dose of aspirin" in judge[1]["content"]
    assert len(fake_llm.requests) == 1
    assert [c["text"] for c in flagged(result)] == ["Please ask a doctor."]


def test_guardrails_of_other_characters_do_not_apply(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    other = Character.objects.create(slug="kai", name="Kai")
    guard(character=other, applies_to="both", action="block", message="No.")

    result = say(app, api_key, "ramen?")

    assert not flagged(result) and result.events[-1]["text"].startswith("You said: ramen?")


def test_a_guardrail_needs_what_its_kind_checks(admin_client) -> None:
    response = admin_client.post(
        "/admin/conversations/guardrail/add/",
        {
            "name": "x",
            "applies_to": "request",
            "kind": "pattern",
            "pattern": "",
            "action": "block",
            "message": "No.",
            "is_active": "on",
        },
    )
    invalid = admin_client.post(
        "/admin/conversations/guardrail/add/",
        {
            "name": "x",
            "applies_to": "request",
            "kind": "pattern",
            "pattern": "(unclosed",
            "action": "block",
            "message": "No.",
            "is_active": "on",
        },
    )

    assert "needs a pattern" in response.content.decode()
    assert "Not a valid regular expression" in invalid.content.decode()
    assert not Guardrail.objects.exists()
