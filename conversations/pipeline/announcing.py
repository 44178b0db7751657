"""An operator speaking through a live session: the character says a given text in its voice
without asking the LLM, with the turn's speak stage and closing event
(docs/turn.md#inside-run_turn)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing

from characters.models import Character
from conversations.speech.tts import TTSError

from .composing import ChunkComposer, sentences
from .events import TurnEvent, TurnFailed
from .speaking import Events, Voice
from .turn import finished, speak


async def announce(
    character: Character, text: str, context_id: uuid.UUID | None = None
) -> AsyncIterator[TurnEvent]:
    """Say `text` in the character's voice, without asking the LLM (an operator speaking
    through a live session): chunks with tags and audio exactly as a reply has them, then
    `finished`. It is not the user's conversation, so nothing is recorded."""
    composer = ChunkComposer(character, context_id)

    async def chunks() -> Events:
        for segment in sentences(text):
            if (chunk := composer.compose(segment)) is not None:
                yield chunk

    try:
        voice = Voice.of(character)
        async with aclosing(speak(voice, chunks())) as spoken:
            async for event in spoken:
                yield event
    except TTSError as exc:
        yield TurnFailed(context_id=context_id, error=str(exc))
        return
    yield finished(composer, character, vision=False)
