"""Tool calls through `/chat`: progress events, spoken strings, results back to the LLM."""

from __future__ import annotations

import json

import pytest

from characters.models import Character
from conversations.models import Context, EndUser, TurnRecord
from tests.conftest import AsgiServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.sse import post_sse

pytestmark = pytest.mark.django_db(transaction=True)


def hello(text: str = "How warm is it in Kyoto?") -> dict[str, object]:
    return {"type": "start", "session_id": "s1", "user_id": "u1", "text": text}


def call(name: str, arguments: object = "{}", call_id: str = "call_1") -> ScriptedReply:
    return ScriptedReply(tool_calls=[{"id": call_id, "name": name, "arguments": arguments}])


def tool_events(events: list[dict]) -> list[dict]:
    return [e["metadata"]["tool_call"] for e in events if e["type"] == "tool_call"]


def test_it_streams_a_tool_and_answers_with_its_result(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(
        call("check_temperature", {"place": "Kyoto"}), ScriptedReply(text="It is 23 degrees.")
    )

    result = post_sse(f"{asgi_server.url}/chat", hello(), key=api_key)

    assert result.types == [
        "start",
        "tool_call",
        "chunk",
        "tool_call",
        "tool_call",
        "chunk",
        "final",
    ]
    started, progress, done = tool_events(result.events)
    assert started == {
        "id": "call_1",
        "name": "check_temperature",
        "arguments": '{"place": "Kyoto"}',
    }
    assert progress["result"] == {"data": {"progress": 1}, "is_final": False}
    assert done["result"] == {"data": {"place": "Kyoto", "celsius": 23}, "is_final": True}
    assert [c["voice_text"] for c in result.of_type("chunk")] == [
        "Let me check.",
        "It is 23 degrees.",
    ]
    assert result.events[-1]["text"] == "Let me check.It is 23 degrees."
    offered = [t["function"]["name"] for t in fake_llm.requests[0]["tools"]]
    assert "check_temperature" in offered and "explode" in offered
    follow_up = fake_llm.requests[1]["messages"]
    assert follow_up[-2]["tool_calls"][0]["function"]["name"] == "check_temperature"
    assert follow_up[-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": json.dumps({"place": "Kyoto", "celsius": 23}),
    }
    stored = list(Context.objects.get().messages.values_list("role", "content", "tool_call_id"))
    assert stored == [
        ("user", "How warm is it in Kyoto?", ""),
        ("assistant", "Let me check.", ""),
        ("tool", json.dumps({"place": "Kyoto", "celsius": 23}), "call_1"),
        ("assistant", "It is 23 degrees.", ""),
    ]
    assert TurnRecord.objects.get().tool_ms is not None


def test_it_runs_plain_function_tools_with_the_orm(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(call("remember_color", '{"color": "teal"}'), ScriptedReply(text="Teal it is."))

    result = post_sse(f"{asgi_server.url}/chat", hello("I love teal"), key=api_key)

    assert result.types[-1] == "final"
    assert EndUser.objects.get().metadata == {"color": "teal"}
    assert tool_events(result.events)[-1]["result"]["data"] == {
        "saved": "teal",
        "for_context": result.events[0]["context_id"],
    }


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (call("explode"), "explode failed: the tool broke"),
        (call("no_such_tool"), "There is no tool named 'no_such_tool'."),
        (call("remember_color", "[1, 2]"), "Arguments are not a JSON object"),
    ],
    ids=["raises", "unknown", "bad-arguments"],
)
def test_it_hands_tool_errors_back_to_the_llm(
    asgi_server: AsgiServer,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    reply: ScriptedReply,
    error: str,
) -> None:
    fake_llm.script(reply, ScriptedReply(text="Sorry, that did not work."))

    result = post_sse(f"{asgi_server.url}/chat", hello(), key=api_key)

    assert result.types[-1] == "final"
    assert tool_events(result.events)[-1]["result"]["data"]["error"].startswith(error)
    assert json.loads(fake_llm.requests[1]["messages"][-1]["content"])["error"].startswith(error)


def test_it_does_not_offer_tools_a_character_disabled(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    character.disabled_tools = ["explode"]
    character.save()

    post_sse(f"{asgi_server.url}/chat", hello(), key=api_key)

    offered = [t["function"]["name"] for t in fake_llm.requests[0]["tools"]]
    assert "explode" not in offered and "check_temperature" in offered


def test_it_makes_a_looping_model_answer_in_words(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    looping = call("check_temperature")
    looping.repeat = 8
    fake_llm.script(looping, ScriptedReply(text="Fine: 23 degrees."))

    result = post_sse(f"{asgi_server.url}/chat", hello(), key=api_key)

    assert result.events[-1]["text"].endswith("Fine: 23 degrees.")
    assert len(fake_llm.requests) == 9
    assert all("tools" in r for r in fake_llm.requests[:8])
    assert "tools" not in fake_llm.requests[8]
