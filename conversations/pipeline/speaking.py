"""Synthesising sentences while the LLM is still writing the next ones.

AIAvatarKit speaks one sentence at a time: sentence N+1 is not even read from the LLM before
sentence N has been synthesised. Here each sentence's synthesis starts as soon as the splitter
produces it, up to `lookahead` sentences ahead of the one being sent, and sentences still go
out in order, each as soon as its own audio is ready.

`Voice` is a character's voice for one turn or announcement: the synthesizer and the time
spent synthesising.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable

from django.conf import settings

from characters.models import Character
from conversations.avatar.speaking import chunk_face
from conversations.speech.tts import SpeechSynthesizer
from conversations.speech.voices import synthesizer_for

from .composing import ChunkComposer
from .events import TurnChunk, TurnRequest, TurnToolCall
from .session_data import remember_speed, session_speed

_END = object()

Events = AsyncGenerator[TurnChunk | TurnToolCall, None]


class Voice:
    """Speaks chunks in a character's voice; `ms` sums the synthesis time."""

    def __init__(self, character: Character, synthesizer: SpeechSynthesizer) -> None:
        self.character = character
        self.synthesizer = synthesizer
        self.face_frames = False  # each spoken chunk also gets its avatar face frames
        self.ms: float | None = None

    @classmethod
    def of(cls, character: Character) -> Voice | None:
        """None when the character has no audio; TTSError when its voice is misconfigured."""
        synthesizer = synthesizer_for(character)
        return None if synthesizer is None else cls(character, synthesizer)

    @classmethod
    async def for_turn(cls, request: TurnRequest, composer: ChunkComposer) -> Voice | None:
        """The voice of a turn that speaks, at the session's speed: the one this request sets
        (kept for the session's later turns), else the one set before."""
        voice = cls.of(request.character) if request.speak else None
        if request.speech_speed is not None:
            await remember_speed(request.session_key, request.speech_speed)
        if voice is not None:
            voice.face_frames = request.face_frames
            composer.speed = request.speech_speed or await session_speed(request.session_key)
        return voice

    async def say(self, chunk: TurnChunk) -> bytes:
        """The chunk's audio (one WAV), at the chunk's speed."""
        assert chunk.voice_text is not None  # only spoken chunks are synthesised
        started = time.perf_counter()
        audio = await self.synthesizer.synthesize(
            chunk.voice_text,
            styled_text=chunk.text,
            language=chunk.language or self.character.language,
            speed=chunk.speed,
        )
        if self.face_frames:
            chunk.face = await chunk_face(chunk, audio)
        self.ms = round((self.ms or 0) + (time.perf_counter() - started) * 1000, 2)
        return audio

    def speak(self, chunks: Events) -> Events:
        """`chunks` with their audio, synthesised ahead while the next ones are written."""
        return speak_ahead(chunks, self.say, settings.TTS_LOOKAHEAD)


async def speak_ahead(
    chunks: Events, synthesize: Callable[[TurnChunk], Awaitable[bytes]], lookahead: int
) -> Events:
    """Yield `chunks` in order, each chunk with `audio` set; tool-call events keep their place
    between them. A failure of the LLM or of a synthesis propagates; whatever is still
    running is cancelled, so no task outlives the turn."""
    loop = asyncio.get_running_loop()
    pending: deque[tuple[TurnChunk | TurnToolCall, asyncio.Future[bytes]]] = deque()
    upcoming: asyncio.Future[object] | None = None
    exhausted = False

    def start(item: TurnChunk | TurnToolCall) -> asyncio.Future[bytes]:
        if isinstance(item, TurnChunk) and item.voice_text:
            return asyncio.ensure_future(synthesize(item))
        silent: asyncio.Future[bytes] = loop.create_future()
        silent.set_result(b"")
        return silent

    try:
        while True:
            if not exhausted and upcoming is None and len(pending) < max(1, lookahead):
                upcoming = asyncio.ensure_future(anext(chunks, _END))
            waiting = [f for f in (upcoming, pending[0][1] if pending else None) if f]
            if not waiting:
                return
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            while pending and pending[0][1].done():
                item, audio = pending.popleft()
                if isinstance(item, TurnChunk):
                    item.audio = audio.result()
                yield item
            if upcoming is not None and upcoming.done():
                produced, upcoming = upcoming.result(), None
                if produced is _END:
                    exhausted = True
                else:
                    assert isinstance(produced, TurnChunk | TurnToolCall)
                    pending.append((produced, start(produced)))
    finally:
        running = [f for f in (upcoming, *(audio for _, audio in pending)) if f is not None]
        for future in running:
            future.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await chunks.aclose()
