"""Tools a character's LLM can call: one registry, specs written once, run with turn metadata.

A tool is a function taking the turn's `ToolContext` and the LLM's arguments. It may be:
- an async function returning a dict (the result given back to the LLM);
- a plain function returning a dict, run in a worker thread so it may use the ORM;
- an async generator yielding progress dicts (`ToolResult(data, is_final=False)` or bare dicts),
  strings to speak at once, and finally a `ToolResult(data)`; the last result is the final one.
Each provider converts `Tool.name/description/parameters` to its own format.
"""

from __future__ import annotations

import inspect
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async

from characters.models import Character
from conversations.models import EndUser

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Who is talking to whom, so a tool acts for the right user and character."""

    character: Character
    end_user: EndUser
    context_id: uuid.UUID
    session_id: str
    channel: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    data: dict[str, Any]
    is_final: bool = True


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    func: Callable[..., Any]
    # Offered only once chosen for the conversation through execute_external_tool
    # (conversations/tools/offer.py), as every tool is for a character with dynamic tools.
    is_dynamic: bool = False
    # Added to the system prompt of every LLM call that offers the tool: when and how to use it.
    instruction: str = ""


# Lists one source's tools for one turn (it may reach a server).
ToolLister = Callable[[], Awaitable[list[Tool]]]
# Where tools not registered in code come from (MCP servers). A source reads the rows it needs
# for a character (plain ORM, in the turn's one database hop) and returns its lister.
ToolSource = Callable[[Character], ToolLister]


@dataclass(frozen=True, slots=True)
class CharacterTools:
    """What a character may use in one turn, as read from the database."""

    registered: dict[str, Tool]
    listers: list[ToolLister]
    disabled: frozenset[str]

    async def list(self) -> list[Tool]:
        """Registered tools and every source's, minus the character's disabled tools. A
        registered tool wins over a source's of the same name."""
        tools = dict(self.registered)
        for lister in self.listers:
            for found in await lister():
                tools.setdefault(found.name, found)
        return [t for name, t in sorted(tools.items()) if name not in self.disabled]


class ToolRegistry:
    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._sources: list[ToolSource] = []

    def register(self, tool: Tool) -> Tool:
        if tool.name in self._tools and self._tools[tool.name].func is not tool.func:
            raise ValueError(f"A different tool is already registered as {tool.name!r}.")
        self._tools[tool.name] = tool
        return tool

    def names(self) -> list[str]:
        return sorted(self._tools)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def add_source(self, source: ToolSource) -> None:
        if source not in self._sources:
            self._sources.append(source)

    def load(self, character: Character) -> CharacterTools:
        """The tools `character` may use (plain ORM: call it from a worker thread)."""
        return CharacterTools(
            registered=dict(self._tools),
            listers=[source(character) for source in self._sources],
            disabled=frozenset(character.disabled_tools),
        )


registry = ToolRegistry()


def tool(
    *,
    name: str,
    description: str,
    parameters: dict[str, Any] | None = None,
    is_dynamic: bool = False,
    instruction: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as a tool offered to every character (a dynamic one
    only once chosen; its instruction goes into the system prompt whenever it is offered)."""

    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        registry.register(
            Tool(
                name=name,
                description=description,
                parameters=parameters or {"type": "object", "properties": {}},
                func=func,
                is_dynamic=is_dynamic,
                instruction=instruction,
            )
        )
        return func

    return register


def parse_arguments(raw: str) -> dict[str, Any]:
    """The LLM's argument string as an object; an empty string means no arguments."""
    if not raw.strip():
        return {}
    parsed = json.loads(raw)
    if not isinstance(parsed, dict):
        raise ValueError("tool arguments must be a JSON object")
    return parsed


async def run_tool(
    tool: Tool, context: ToolContext, arguments: dict[str, Any]
) -> AsyncIterator[ToolResult | str]:
    """Run a tool of any supported shape as one stream of results and spoken strings.

    A tool that fails yields a final `{"error": ...}` result, so the LLM can tell the user
    instead of the whole turn failing.
    """
    try:
        if inspect.isasyncgenfunction(tool.func):
            async for output in tool.func(context, arguments):
                if isinstance(output, (str, ToolResult)):
                    yield output
                else:
                    yield ToolResult(output, is_final=False)
            return
        if inspect.iscoroutinefunction(tool.func):
            result = await tool.func(context, arguments)
        else:
            result = await sync_to_async(tool.func)(context, arguments)
        yield result if isinstance(result, ToolResult) else ToolResult(result)
    except Exception as exc:
        logger.exception("tool %s failed", tool.name)
        yield ToolResult({"error": f"{tool.name} failed: {exc}"})
