"""Guardrails (docs/turn.md#guardrails): checks on what users ask and what characters answer.

Operators define them in the admin (or over REST), for one character or all: a regular
expression, a yes/no question to the character's LLM, or a Python class named by dotted path
(in one of TURN_HOOK_MODULES) whose `async check(self, text, turn)` answers False, True or the
text to say instead of the guardrail's message. All checks for a text start together; the
first that triggers (in completion order) wins and the others are cancelled, so a slow LLM
check never delays a verdict a pattern already reached.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db.models import Q

from avatarsite.tenants.config_cache import cached
from characters.models import Character
from conversations.llm import ChatMessage, LLMError, LLMRequest, provider_for
from conversations.models import Guardrail, guard_class

from .base import ToolContext

JUDGE_PROMPT = (
    "You check texts for a chat service. Answer the question about the text with YES or NO "
    "only, nothing else."
)


@dataclass(frozen=True, slots=True)
class GuardrailHit:
    name: str
    action: str  # Guardrail.Action
    message: str


def guardrails_for(character: Character) -> list[Guardrail]:
    """The active guardrails of a character, its own and its tenant's for every character
    (one query, cached with the tenant's configuration: the list is shared, never change it)."""

    def read() -> list[Guardrail]:
        return list(
            Guardrail.objects.filter(
                Q(character=character) | Q(character__isnull=True),
                tenant_id=character.tenant_id,
                is_active=True,
            )
        )

    return cached(character.tenant_id, ("guardrails", character.pk), read) or []


@cache
def _python_guard(path: str) -> Any:
    """One instance per class and process, so a guardrail may load a model once."""
    return guard_class(path)()


async def _triggers(guardrail: Guardrail, turn: ToolContext, text: str) -> bool | str:
    """False, True, or (a Python guardrail's) the message to use instead of the row's."""
    if guardrail.kind == Guardrail.Kind.PATTERN:
        return re.search(guardrail.pattern, text, re.IGNORECASE) is not None
    if guardrail.kind == Guardrail.Kind.PYTHON:
        verdict = await _python_guard(guardrail.class_path).check(text, turn)
        return verdict if isinstance(verdict, str) and verdict else verdict is True
    character = turn.character
    request = LLMRequest(
        messages=[
            ChatMessage(role="system", content=JUDGE_PROMPT),
            ChatMessage(role="user", content=f"Question: {guardrail.question}\n\nText:\n{text}"),
        ],
        model=character.llm_model,
    )
    try:
        verdict = "".join(
            [d async for d in provider_for(character).stream(request) if isinstance(d, str)]
        )
    except LLMError:
        return False  # a judge that cannot answer does not block the conversation
    return verdict.strip().upper().startswith("YES")


async def check(
    guardrails: list[Guardrail], turn: ToolContext, text: str, side: str
) -> GuardrailHit | None:
    """The first guardrail for `side` ("request" or "response") that `text` triggers. A
    Python guardrail that raises, or whose class can no longer be loaded, fails the turn: a
    check that cannot run must not pass for one that passed."""
    applicable = [g for g in guardrails if g.applies_to in (side, Guardrail.AppliesTo.BOTH)]
    if not applicable or not text.strip():
        return None
    tasks = {asyncio.ensure_future(_triggers(g, turn, text)): g for g in applicable}
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if verdict := task.result():
                    guardrail = tasks[task]
                    message = verdict if isinstance(verdict, str) else guardrail.message
                    return GuardrailHit(guardrail.name, guardrail.action, message)
        return None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
