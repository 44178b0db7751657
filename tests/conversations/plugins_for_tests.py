"""What the test server process plugs in: tools (TOOL_MODULES), a request validator
(REQUEST_VALIDATORS) and a tool selector (TOOL_SELECTOR, in the dynamic-tools tests)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from characters.models import Character
from conversations.llm import ChatMessage
from conversations.pipeline.events import TurnRequest
from conversations.tools import Tool, ToolContext, ToolResult, tool


@tool(
    name="check_temperature",
    description="Measure the temperature somewhere, reporting progress.",
    parameters={"type": "object", "properties": {"place": {"type": "string"}}},
)
async def check_temperature(
    context: ToolContext, arguments: dict[str, Any]
) -> AsyncIterator[str | dict[str, Any] | ToolResult]:
    yield "Let me check."
    yield {"progress": 1}
    yield ToolResult({"place": arguments.get("place", "here"), "celsius": 23})


@tool(
    name="remember_color",
    description="Remember the user's favourite colour.",
    parameters={
        "type": "object",
        "properties": {"color": {"type": "string"}},
        "required": ["color"],
    },
)
def remember_color(context: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
    # A plain function: it runs in a worker thread, where the ORM may be used.
    end_user = context.end_user
    end_user.metadata = {**end_user.metadata, "color": arguments["color"]}
    end_user.save(update_fields=["metadata", "updated_at"])
    return {"saved": arguments["color"], "for_context": str(context.context_id)}


@tool(name="explode", description="Always fails.")
async def explode(context: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("the tool broke")


def refuse_secrets(request: TurnRequest, text: str) -> str | None:
    """A request validator (REQUEST_VALIDATORS): a plain function, so it runs in a thread."""
    return "Let's not talk about secrets." if "secret" in text.lower() else None


def select_named_tools(
    character: Character, messages: list[ChatMessage], tools: list[Tool]
) -> list[Tool]:
    """A TOOL_SELECTOR: the tools the trigger's `action` names. A plain function, so it runs
    in a thread and may use the ORM."""
    assert Character.objects.filter(pk=character.pk).exists()
    action = json.loads(messages[-1].tool_calls[0]["arguments"])["action"]
    return [t for t in tools if t.name in action]
