"""Automatic recall: the few memories most relevant to the user's message, added to the turn's
system prompt within the character's token budget (memory settings: auto recall).

No LLM call, one search off the event loop, bounded by MEMORY_RECALL_TIMEOUT_SECONDS: a slow
or failing search leaves the turn as it would be without memory. Whether a character recalls,
and how much, is read in the turn's preparation from the tenant's cached configuration (memory
settings are watched by it), so a character without automatic recall costs nothing per turn.
"""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.conf import settings

from avatarsite.tenants.config_cache import cached
from characters.models import Character
from conversations.models import EndUser
from conversations.pipeline.prompt import PromptSection

from .models import MemorySettings
from .search import describe, estimated_tokens, search
from .store import character_key, user_key

logger = logging.getLogger("avatarsite.memory")

INTRO = (
    "What you remember of earlier conversations with this user (and your diary). Use it "
    "only when it helps; do not recite it."
)
CANDIDATES = 8


def recall_budget(character: Character) -> int:
    """The character's token budget for automatic recall; 0 when it does not recall (plain
    ORM, cached with the tenant's configuration)."""

    def read() -> int:
        chosen = MemorySettings.objects.filter(character=character, auto_recall=True)
        return chosen.values_list("recall_token_budget", flat=True).first() or 0

    # Cached as 0 too: the key is the character's own id, not something a client names.
    return cached(character.tenant_id, ("memory_recall", character.pk), read) or 0


def recall_section(character: Character) -> PromptSection | None:
    """The turn's recall section (add_prompt_section), if the character recalls at all."""
    budget = recall_budget(character)
    if not budget:
        return None

    async def recall(end_user: EndUser | None, text: str) -> str:
        if end_user is None or not text.strip():
            return ""
        try:
            return await asyncio.wait_for(
                sync_to_async(_recalled)(character, end_user, text, budget),
                settings.MEMORY_RECALL_TIMEOUT_SECONDS,
            )
        except Exception as exc:  # memory is a bonus: a turn never fails for it
            logger.warning("recall skipped for character=%s: %r", character.slug, exc)
            return ""

    return recall


def _recalled(character: Character, end_user: EndUser, text: str, budget: int) -> str:
    hits = search(
        character.tenant_id,
        [user_key(end_user, character), character_key(character)],
        text,
        top_k=CANDIDATES,
    )
    lines: list[str] = []
    spent = estimated_tokens(INTRO)
    for hit in hits:
        line = f"- {describe(hit.item, character.zone, character.name)}"
        cost = estimated_tokens(line)
        if spent + cost > budget:
            break
        lines.append(line)
        spent += cost
    return "\n".join([INTRO, *lines]) if lines else ""
