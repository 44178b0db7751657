"""The character's turn hooks (docs/turn.md#hooks): async functions named by dotted path in
one of TURN_HOOK_MODULES, each given the turn's `ToolContext` (who talks to whom) first.

- on_error(turn, error) when the LLM fails or the turn runs out of time: `error.status_code`
  and `error.body` are what the provider answered (None for a timeout). It returns the apology
  to say instead of the character's, or None. A hook that raises is logged and the usual
  apology said: an error path must not fail twice.
- response(turn, sentence) for every sentence of the reply, before it is shown, spoken or kept:
  it returns the sentence to use instead, or None to keep it. A hook that raises fails the turn.
- on_finish(turn, reply) once a completed turn is recorded, before its final event. A hook that
  raises is logged; the turn stays completed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from characters.hooks import async_function
from characters.models import Character
from conversations.tools import ToolContext

logger = logging.getLogger(__name__)

Hook = Callable[..., Awaitable[Any]]


class HookRefused(Exception):
    """A hook the character names can no longer be loaded (its module left TURN_HOOK_MODULES,
    or it is gone); the message is safe to show to a client."""


def _load(path: str) -> Hook | None:
    if not path:
        return None
    try:
        return async_function(path, "TURN_HOOK_MODULES")
    except ValueError as exc:
        raise HookRefused(f"Turn hook refused: {exc}") from exc


@dataclass(frozen=True, slots=True)
class TurnHooks:
    on_error: Hook | None = None
    response: Hook | None = None
    on_finish: Hook | None = None
    refused: str = ""  # why a hook the character names cannot be loaded (the turn fails)

    @classmethod
    def of(cls, character: Character) -> TurnHooks:
        """The character's hooks, loaded; a refusal is kept for the turn to fail with, since
        transports prepare turns where they cannot report it."""
        try:
            return cls(
                on_error=_load(character.on_error_hook),
                response=_load(character.response_hook),
                on_finish=_load(character.on_finish_hook),
            )
        except HookRefused as exc:
            return cls(refused=str(exc))

    def check(self) -> None:
        """HookRefused when a hook could not be loaded."""
        if self.refused:
            raise HookRefused(self.refused)

    async def apology(self, turn: ToolContext, error: Exception) -> str:
        """What the character says after `error`: the on_error hook's text, else its own."""
        default = turn.character.apology
        if self.on_error is None:
            return default
        try:
            said = await self.on_error(turn, error)
        except Exception:
            logger.exception("on_error hook of %s failed", turn.character.slug)
            return default
        return said if isinstance(said, str) else default

    async def rewrite(self, turn: ToolContext, sentence: str) -> str:
        """`sentence` as the response hook has it said."""
        if self.response is None:
            return sentence
        rewritten = await self.response(turn, sentence)
        return rewritten if isinstance(rewritten, str) else sentence

    async def finished(self, turn: ToolContext, reply: str) -> None:
        if self.on_finish is None:
            return
        try:
            await self.on_finish(turn, reply)
        except Exception:
            logger.exception("on_finish hook of %s failed", turn.character.slug)
