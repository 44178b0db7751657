"""The tool rounds of a turn (docs/turn.md#tools): running the calls the model made in one
round, and what the round adds to the conversation.

Calls run one after another. Each reports that it starts and every result it yields; strings
a tool yields are passed on to be spoken at once. An unknown tool or unreadable arguments
become an error result the model can explain, rather than a failed turn.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from conversations.llm import ChatMessage, ToolCallRequest
from conversations.models import Message

from .base import Tool, ToolContext, ToolResult, parse_arguments, run_tool
from .offer import ToolOffer

# Tool rounds per turn before the model must answer in words.
MAX_TOOL_ROUNDS = 8


def offered(offer: ToolOffer, round_number: int) -> list[Tool]:
    """The tools round `round_number` (from 0) offers; the last round offers none, so a model
    stuck calling tools must answer."""
    return offer.next_round() if round_number < MAX_TOOL_ROUNDS else []


@dataclass(frozen=True, slots=True)
class ToolProgress:
    call: ToolCallRequest
    result: ToolResult | None  # None: the call starts


async def _call_tool(
    tool: Tool | None, call: ToolCallRequest, context: ToolContext
) -> AsyncIterator[ToolResult | str]:
    if tool is None:
        yield ToolResult({"error": f"There is no tool named {call.name!r}."})
        return
    try:
        arguments = parse_arguments(call.arguments)
    except ValueError as exc:
        yield ToolResult({"error": f"Arguments are not a JSON object: {exc}"})
        return
    async for output in run_tool(tool, context, arguments):
        yield output


class ToolRound:
    """The calls of one round, run against the tools of the turn."""

    def __init__(
        self, calls: list[ToolCallRequest], tools: Mapping[str, Tool], context: ToolContext
    ) -> None:
        self.calls = calls
        self.tools = tools
        self.context = context
        self.results: list[ChatMessage] = []

    async def run(self) -> AsyncIterator[ToolProgress | str]:
        """Progress of every call, and what the tools say aloud, in order."""
        for call in self.calls:
            yield ToolProgress(call, None)
            final: ToolResult | None = None
            async for output in _call_tool(self.tools.get(call.name), call, self.context):
                if isinstance(output, str):
                    yield output
                    continue
                yield ToolProgress(call, output)
                if final is None or not final.is_final:
                    final = output
            self.results.append(
                ChatMessage(
                    role=Message.Role.TOOL,
                    content=json.dumps(final.data if final else {}, ensure_ascii=False),
                    tool_call_id=call.id,
                )
            )

    def messages(self, said: str) -> list[ChatMessage]:
        """What the round adds to the conversation: the model's calls, with what it said
        before them, and the results."""
        calls = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in self.calls]
        return [
            ChatMessage(role=Message.Role.ASSISTANT, content=said, tool_calls=calls),
            *self.results,
        ]
