"""Which tools each round of a turn offers the model, with dynamic tools
(docs/turn.md#dynamic-tools), and the instructions of the tools offered.

Dynamic tools are those marked `is_dynamic`, or every tool of a character whose *dynamic
tools* switch is on. Without any, every tool is offered every round. With some, a round offers
the other tools, the trigger `execute_external_tool(target, action)` and the dynamic tools
this conversation already used. When the model calls the trigger, up to five dynamic tools are
selected (by `TOOL_SELECTOR`, or else by one extra call to the character's LLM listing them),
the trigger's result names them, and the next round offers those instead of the trigger.
Nothing selected: the trigger's result is `{"message": "No tools found"}`.

The trigger call and its result stay in the conversation like any tool call, so the text the
model said before calling it is kept and the provider's call/result pairing stays valid.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils.module_loading import import_string

from characters.models import Character
from conversations.llm import ChatMessage, LLMRequest, provider_for

from .base import Tool, ToolContext

TRIGGER_NAME = "execute_external_tool"
MAX_SELECTED = 5
NOT_FOUND: dict[str, Any] = {"message": "No tools found"}

Selector = Callable[[Character, list[ChatMessage], list[Tool]], Awaitable[list[Tool]] | list[Tool]]

LISTING_PROMPT = (
    "You choose tools for an assistant. From the list below, pick up to five tools that can do "
    "what the user wants, best first, and answer only with their names in the form "
    "[tools:first_name,second_name]. If none fits, answer [tools:NOT_FOUND].\n\nTools:\n"
)
SELECTION = re.compile(r"\[tools:([^\]]*)\]|<tools\s+names=\"([^\"]*)\"")


@cache
def load_selector() -> Selector | None:
    """The TOOL_SELECTOR function, imported once (at start-up, so a wrong path fails early)."""
    return import_string(settings.TOOL_SELECTOR) if settings.TOOL_SELECTOR else None


def parse_selection(reply: str) -> list[str]:
    """Tool names from an LLM's `[tools:a,b]` (or `<tools names="a,b">`) answer."""
    match = SELECTION.search(reply)
    if match is None:
        return []
    names = (match.group(1) or match.group(2) or "").split(",")
    return [n.strip() for n in names if n.strip() and n.strip() != "NOT_FOUND"]


async def _llm_selection(
    character: Character, messages: list[ChatMessage], tools: list[Tool]
) -> list[Tool]:
    """The default selector: one extra, non-tool call to the character's own LLM."""
    listing = "\n".join(f"- {t.name}: {t.description}" for t in tools)
    asked = next((m.content for m in reversed(messages) if m.role == "user"), "")
    trigger = messages[-1].tool_calls[0]["arguments"] if messages[-1].tool_calls else "{}"
    request = LLMRequest(
        messages=[
            ChatMessage(role="system", content=LISTING_PROMPT + listing),
            ChatMessage(
                role="user",
                content=f"The user said: {asked}\nThe assistant wants to do: {trigger}",
            ),
        ],
        model=character.llm_model,
    )
    reply = "".join(
        [d async for d in provider_for(character).stream(request) if isinstance(d, str)]
    )
    by_name = {t.name: t for t in tools}
    return [by_name[n] for n in parse_selection(reply) if n in by_name]


async def select_tools(
    character: Character, messages: list[ChatMessage], tools: list[Tool]
) -> list[Tool]:
    """Up to five of `tools` for what the conversation asks; a plain selector runs in a
    worker thread, so it may use the ORM."""
    selector = load_selector()
    if selector is None:
        chosen = await _llm_selection(character, messages, tools)
    elif inspect.iscoroutinefunction(selector):
        chosen = await selector(character, messages, tools)
    else:
        # Not a coroutine function, so it returns the list itself.
        chosen = cast("list[Tool]", await sync_to_async(selector)(character, messages, tools))
    by_name = {t.name: t for t in tools}
    names = dict.fromkeys(t.name for t in chosen if t.name in by_name)
    return [by_name[n] for n in names][:MAX_SELECTED]


class ToolOffer:
    """The tools of one turn: what may be called, and what each round offers."""

    def __init__(
        self,
        character: Character,
        tools: list[Tool],
        conversation: Callable[[], list[ChatMessage]],
    ) -> None:
        self.character = character
        self._tools = {t.name: t for t in tools}
        self._dynamic = [t.name for t in tools if t.is_dynamic or character.dynamic_tools]
        self._static = [t.name for t in tools if t.name not in self._dynamic]
        self._conversation = conversation
        self._selected: list[str] | None = None
        self._trigger = Tool(
            name=TRIGGER_NAME,
            description="Execute the most appropriate tool for what the user wants to do "
            "(action) to what (target).",
            parameters={
                "type": "object",
                "properties": {
                    "target": {"type": "string", "description": "What to act on."},
                    "action": {"type": "string", "description": "What to do with it."},
                },
                "required": ["target", "action"],
            },
            func=self._select,
        )
        # Everything stays callable by name; only what is offered changes.
        self.callable = dict(self._tools)
        if self._dynamic:
            self.callable[TRIGGER_NAME] = self._trigger

    def next_round(self) -> list[Tool]:
        """The tools to offer in the next LLM round."""
        if not self._dynamic:
            return list(self._tools.values())
        used = [n for n in self._used() if n in self._dynamic]
        if self._selected is not None:
            names, self._selected = [*self._static, *self._selected, *used], None
            return [self._tools[n] for n in dict.fromkeys(names)]
        return [self._trigger, *(self._tools[n] for n in dict.fromkeys([*self._static, *used]))]

    def _used(self) -> list[str]:
        names = (call["name"] for m in self._conversation() for call in m.tool_calls)
        return [n for n in dict.fromkeys(names) if n in self._tools]

    async def _select(self, context: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
        """The trigger tool: choose the tools the next round offers."""
        call = {"id": "", "name": TRIGGER_NAME, "arguments": json.dumps(arguments)}
        messages = [
            *self._conversation(),
            ChatMessage(role="assistant", content="", tool_calls=[call]),
        ]
        dynamic = [self._tools[n] for n in self._dynamic]
        chosen = await select_tools(self.character, messages, dynamic)
        if not chosen:
            return NOT_FOUND
        self._selected = [t.name for t in chosen]
        return {
            "message": "These tools are now available: "
            + ", ".join(self._selected)
            + ". Call the one that does what the user wants."
        }


def with_instructions(system: str, tools: list[Tool]) -> str:
    """`system` followed by the instructions of the offered `tools` that have one, each once
    under the names of the tools it is for (an MCP server's is every one of its tools')."""
    names: dict[str, list[str]] = {}
    for t in tools:
        if instruction := t.instruction.strip():
            names.setdefault(instruction, []).append(t.name)
    if not names:
        return system
    said = [f"## {', '.join(tools_of)}\n{instruction}" for instruction, tools_of in names.items()]
    return "\n\n".join([system, "How to use your tools:", *said])
