"""Dynamic tools through /chat: the trigger, the selection, the narrowed round
(docs/turn.md#dynamic-tools)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from characters.models import Character
from conversations.models import Context
from tests.conftest import AsgiServer, server_env
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.processes import start_daphne, stop_process
from tests.sse import SSEResult, post_sse

pytestmark = pytest.mark.django_db(transaction=True)

TRIGGER = "execute_external_tool"


@pytest.fixture
def dynamic(character: Character) -> Character:
    character.dynamic_tools = True
    character.save()
    return character


def ask(text: str = "How warm is Kyoto?", context_id: str | None = None) -> dict[str, object]:
    return {
        "type": "start",
        "session_id": "s1",
        "user_id": "u1",
        "text": text,
        "context_id": context_id,
    }


def call(name: str, arguments: object, call_id: str) -> ScriptedReply:
    return ScriptedReply(tool_calls=[{"id": call_id, "name": name, "arguments": arguments}])


def trigger(action: str = "measure the temperature", call_id: str = "call_t") -> ScriptedReply:
    return call(TRIGGER, {"target": "Kyoto", "action": action}, call_id)


def offered(request: dict) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools", [])]


def results(result: SSEResult) -> list[dict]:
    calls = [e["metadata"]["tool_call"] for e in result.events if e["type"] == "tool_call"]
    return [c["result"]["data"] for c in calls if c.get("result", {}).get("is_final")]


def test_it_offers_the_trigger_then_only_the_tools_the_llm_selected(
    asgi_server: AsgiServer, dynamic: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(
        trigger(),
        ScriptedReply(text="[tools:check_temperature,no_such_tool]"),
        call("check_temperature", {"place": "Kyoto"}, "call_1"),
        ScriptedReply(text="It is 23 degrees."),
        ScriptedReply(text="You are welcome."),
    )

    first = post_sse(f"{asgi_server.url}/chat", ask(), key=api_key)
    post_sse(f"{asgi_server.url}/chat", ask("Thanks", first.events[0]["context_id"]), key=api_key)

    requests = fake_llm.requests
    assert offered(requests[0]) == [TRIGGER]
    # The selection: one call without tools, listing every tool with its description.
    assert "tools" not in requests[1]
    listing = requests[1]["messages"][0]["content"]
    assert "- check_temperature: Measure the temperature somewhere" in listing
    assert "- remember_color: Remember the user's favourite colour." in listing
    assert "How warm is Kyoto?" in requests[1]["messages"][1]["content"]
    # The retry round offers only the selection; later rounds the trigger and used tools.
    assert offered(requests[2]) == ["check_temperature"]
    assert offered(requests[3]) == [TRIGGER, "check_temperature"]
    assert offered(requests[4]) == [TRIGGER, "check_temperature"]
    assert first.events[-1]["text"].endswith("It is 23 degrees.")
    assert results(first)[0]["message"].startswith("These tools are now available: check_temp")
    stored = list(Context.objects.get().messages.values_list("role", "tool_call_id"))
    assert stored[:5] == [
        ("user", ""),
        ("assistant", ""),
        ("tool", "call_t"),
        ("assistant", ""),
        ("tool", "call_1"),
    ]


def test_it_answers_no_tools_found_when_nothing_fits(
    asgi_server: AsgiServer, dynamic: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(
        trigger("book a flight"),
        ScriptedReply(text="[tools:NOT_FOUND]"),
        ScriptedReply(text="I cannot book flights."),
    )

    result = post_sse(f"{asgi_server.url}/chat", ask("Book me a flight"), key=api_key)

    assert results(result) == [{"message": "No tools found"}]
    assert json.loads(fake_llm.requests[2]["messages"][-1]["content"]) == {
        "message": "No tools found"
    }
    assert offered(fake_llm.requests[2]) == [TRIGGER]
    assert result.events[-1]["text"] == "I cannot book flights."


def test_it_offers_every_tool_without_the_switch(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    post_sse(f"{asgi_server.url}/chat", ask(), key=api_key)

    names = offered(fake_llm.requests[0])
    assert TRIGGER not in names and "check_temperature" in names


@pytest.fixture
def selector_server(fake_openai: FakeOpenAI, tmp_path: Path) -> Iterator[str]:
    """A server process whose TOOL_SELECTOR is the test plugin's."""
    env = server_env(
        fake_openai, TOOL_SELECTOR="tests.conversations.plugins_for_tests.select_named_tools"
    )
    process, url = start_daphne(env, tmp_path / "selector.log")
    try:
        yield url
    finally:
        stop_process(process)


def test_it_selects_with_the_tool_selector_hook(
    selector_server: str, dynamic: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(
        trigger("use remember_color"),
        call("remember_color", {"color": "teal"}, "call_1"),
        ScriptedReply(text="Teal it is."),
    )

    result = post_sse(f"{selector_server}/chat", ask("I love teal"), key=api_key)

    assert result.events[-1]["text"] == "Teal it is."
    # No listing call to the LLM: the hook chose, and the retry round offers its choice.
    assert len(fake_llm.requests) == 3
    assert offered(fake_llm.requests[1]) == ["remember_color"]
    assert results(result)[1]["saved"] == "teal"
