"""Guardrails (docs/turn.md#guardrails): checks on what users ask and what characters answer.

Operators define them in the admin, for one character or all. All checks for a text start
together; the first that triggers (in completion order) wins and the others are cancelled, so
a slow LLM check never delays a verdict a pattern already reached.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass

from django.db.models import Q

from avatarsite.tenants.config_cache import cached
from characters.models import Character
from conversations.llm import ChatMessage, LLMError, LLMRequest, provider_for
from conversations.models import Guardrail

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


async def _triggers(guardrail: Guardrail, character: Character, text: str) -> bool:
    if guardrail.kind == Guardrail.Kind.PATTERN:
        return re.search(guardrail.pattern, text, re.IGNORECASE) is not None
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
    guardrails: list[Guardrail], character: Character, text: str, side: str
) -> GuardrailHit | None:
    """The first guardrail for `side` ("request" or "response") that `text` triggers."""
    applicable = [g for g in guardrails if g.applies_to in (side, Guardrail.AppliesTo.BOTH)]
    if not applicable or not text.strip():
        return None
    tasks = {asyncio.ensure_future(_triggers(g, character, text)): g for g in applicable}
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.result():
                    guardrail = tasks[task]
                    return GuardrailHit(guardrail.name, guardrail.action, guardrail.message)
        return None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
