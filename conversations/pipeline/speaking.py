"""Synthesising sentences while the LLM is still writing the next ones.

AIAvatarKit speaks one sentence at a time: sentence N+1 is not even read from the LLM before
sentence N has been synthesised. Here each sentence's synthesis starts as soon as the splitter
produces it, up to `lookahead` sentences ahead of the one being sent, and sentences still go
out in order, each as soon as its own audio is ready.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable

from .events import TurnChunk, TurnToolCall

_END = object()


async def speak_ahead(
    chunks: AsyncGenerator[TurnChunk | TurnToolCall, None],
    synthesize: Callable[[TurnChunk], Awaitable[bytes]],
    lookahead: int,
) -> AsyncGenerator[TurnChunk | TurnToolCall, None]:
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
