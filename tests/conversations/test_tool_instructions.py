"""Per-tool `is_dynamic` and `instruction` (docs/turn.md#dynamic-tools): a dynamic tool is
offered only once chosen through execute_external_tool, the others every round; each offered
tool's instruction is in that call's system prompt."""

from __future__ import annotations

from typing import Any

import pytest

from characters.models import Character
from conversations.pipeline import turn as stages
from conversations.pipeline.events import TurnFinished
from conversations.tools import Tool, ToolContext, registry
from conversations.tools.offer import TRIGGER_NAME, load_selector
from tests.conversations.test_turn_stages import collect, request_for
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp

pytestmark = pytest.mark.django_db

NO_ARGUMENTS = {"type": "object", "properties": {}}


async def answer(context: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True}


@pytest.fixture
def tools(monkeypatch: pytest.MonkeyPatch) -> dict[str, Tool]:
    made = {
        "clock": Tool("clock", "Tell the time.", NO_ARGUMENTS, answer, instruction="Ask me."),
        "lights": Tool(
            "lights",
            "Switch the lights.",
            NO_ARGUMENTS,
            answer,
            is_dynamic=True,
            instruction="Say which room first.",
        ),
    }
    for tool in made.values():
        monkeypatch.setitem(registry._tools, tool.name, tool)
    return made


def offered(request: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in request.get("tools", [])]


def system(request: dict[str, Any]) -> str:
    return str(request["messages"][0]["content"])


def test_a_dynamic_tool_waits_for_the_trigger_and_its_instruction_for_its_offer(
    app: InProcessApp,
    character: Character,
    fake_llm: FakeOpenAI,
    tools: dict[str, Tool],
    settings: Any,
) -> None:
    settings.TOOL_SELECTOR = "tests.conversations.plugins_for_tests.select_named_tools"
    load_selector.cache_clear()  # read once per process
    character.disabled_tools = ["check_temperature", "remember_color", "explode"]
    character.save()
    fake_llm.script(
        ScriptedReply(
            tool_calls=[{"name": TRIGGER_NAME, "arguments": {"target": "hall", "action": "lights"}}]
        ),
        ScriptedReply(tool_calls=[{"name": "lights", "arguments": {}}]),
        ScriptedReply(text="Done."),
    )

    events = collect(stages.run_turn(request_for(character, text="Lights on in the hall")))

    assert isinstance(events[-1], TurnFinished)
    first, chosen, last = fake_llm.requests
    assert "lights" not in offered(first)
    assert {"clock", TRIGGER_NAME} <= set(offered(first))
    assert "Ask me." in system(first) and "Say which room first." not in system(first)
    assert {"clock", "lights"} <= set(offered(chosen)) and TRIGGER_NAME not in offered(chosen)
    assert "Say which room first." in system(chosen)
    assert "lights" in offered(last)  # used in this conversation: still offered
    load_selector.cache_clear()


def test_without_dynamic_tools_every_tool_is_offered_and_no_trigger(
    app: InProcessApp,
    character: Character,
    fake_llm: FakeOpenAI,
    tools: dict[str, Tool],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = Tool("lights", "Switch the lights.", NO_ARGUMENTS, answer)
    monkeypatch.setitem(registry._tools, plain.name, plain)

    collect(stages.run_turn(request_for(character, text="Hi")))

    assert {"clock", "lights"} <= set(offered(fake_llm.requests[0]))
    assert TRIGGER_NAME not in offered(fake_llm.requests[0])
