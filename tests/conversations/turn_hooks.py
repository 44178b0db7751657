"""Turn hooks and a Python guardrail the tests name by dotted path (the tests put this module
in TURN_HOOK_MODULES)."""

from __future__ import annotations

from typing import Any

from conversations.llm import LLMError
from conversations.tools import ToolContext

CONTENT_FILTER_APOLOGY = "I would rather not talk about that. Shall we pick another topic?"

# What on_finish saw, in order: (context id, reply).
finished: list[tuple[str, str]] = []


async def content_filter_apology(turn: ToolContext, error: Exception) -> str | None:
    """A refusal by the provider's content filter gets its own apology; anything else the
    character's."""
    body = error.body if isinstance(error, LLMError) else None
    if isinstance(body, dict) and body.get("code") == "content_filter":
        return CONTENT_FILTER_APOLOGY
    return None


async def failing_apology(turn: ToolContext, error: Exception) -> str | None:
    raise RuntimeError("the hook broke")


async def loud(turn: ToolContext, sentence: str) -> str | None:
    """Shouts every sentence that mentions the weather; keeps the others."""
    return sentence.upper() if "weather" in sentence else None


async def failing_rewrite(turn: ToolContext, sentence: str) -> str | None:
    raise RuntimeError("the hook broke")


async def note_finish(turn: ToolContext, reply: str) -> None:
    finished.append((str(turn.context_id), reply))


def not_async(turn: ToolContext, error: Exception) -> None:
    """Not a coroutine function: refused."""


class NoPasswords:
    """A Python guardrail: a text asking for a password triggers it, with its own message."""

    async def check(self, text: str, turn: ToolContext) -> bool | str:
        if "password" in text.lower():
            return f"{turn.character.name} never shares passwords."
        return "forbidden" in text.lower()


class NotAGuardrail:
    def check(self, text: str, turn: ToolContext) -> Any:
        return True


async def failing_validator(request: object, text: str) -> str | None:
    """A request validator (REQUEST_VALIDATORS) with a bug: it raises before the LLM."""
    raise RuntimeError("the validator broke")
