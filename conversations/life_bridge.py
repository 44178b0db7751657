"""conversations' end of the bridge a character's life is written through
(characters/life/bridge.py): the character's LLM, and what was said with the character."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from characters.life.bridge import LLMFailed, Prompt
from characters.models import Character

from .llm import ChatMessage, LLMError, LLMRequest, provider_for
from .llm.echo import EchoProvider
from .models import Message


class ConversationsBridge:
    def has_llm(self, character: Character) -> bool:
        return provider_for(character).name != EchoProvider.name

    async def complete(self, character: Character, messages: Sequence[Prompt], model: str) -> str:
        request = LLMRequest(
            messages=[ChatMessage(role=m.role, content=m.content) for m in messages],
            model=model,
            temperature=character.llm_temperature,
        )
        try:
            # No tools are offered, so the provider yields text only.
            stream = provider_for(character).stream(request)
            return "".join([delta async for delta in stream if isinstance(delta, str)])
        except LLMError as exc:
            raise LLMFailed(str(exc)) from exc

    def said(self, character: Character, start: datetime, end: datetime) -> list[tuple[bool, str]]:
        said = (
            Message.objects.filter(
                context__character=character,
                created_at__gte=start,
                created_at__lt=end,
                role__in=(Message.Role.USER, Message.Role.ASSISTANT),
            )
            .order_by("created_at", "position")
            .values_list("role", "content")
        )
        return [(role == Message.Role.USER, content) for role, content in said]
