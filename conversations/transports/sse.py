"""Server-sent events: one `data:` line per event, flushed at once, with a keep-alive comment
whenever the turn is quiet for a while (docs/wire-protocols.md#server-sent-events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils import timezone

from ..rate_limits import StreamSlot

_DONE = object()


async def _with_pings(
    events: AsyncIterator[str], interval: float, ping: str | None, slot: StreamSlot | None
) -> AsyncIterator[bytes]:
    """Frame `events` as SSE, interleaving pings during silences: a `: ping` comment, or a
    `ping` event for APIs that define one (Dify).

    The events are pulled by a task of their own so a slow LLM never blocks the pings; when
    the client disconnects, Django cancels this generator and the task is cancelled with it.
    """
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in events:
                queue.put_nowait(event)
        finally:
            queue.put_nowait(_DONE)

    task = asyncio.create_task(pump())
    try:
        while True:
            try:
                async with asyncio.timeout(interval):
                    item = await queue.get()
            except TimeoutError:
                if ping is None:
                    yield f": ping - {timezone.now().isoformat()}\r\n\r\n".encode()
                else:
                    yield f"data: {ping}\r\n\r\n".encode()
                continue
            if item is _DONE:
                break
            yield f"data: {item}\r\n\r\n".encode()
        await task  # surfaces an exception from the producer
    finally:
        if slot is not None:
            # In a thread (the limits storage blocks), without awaiting: this also runs when
            # the client went away and the generator is being cancelled.
            asyncio.get_running_loop().run_in_executor(None, slot.release)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def sse_response(
    events: AsyncIterator[str], *, ping: str | None = None, slot: StreamSlot | None = None
) -> StreamingHttpResponse:
    """Stream `events` (JSON strings) as SSE; `ping` is an event to send instead of comments;
    `slot`, the API key's stream slot, is given back when the stream ends, however it ends."""
    response = StreamingHttpResponse(
        _with_pings(events, settings.SSE_PING_INTERVAL_SECONDS, ping, slot),
        content_type="text/event-stream; charset=utf-8",
    )
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"
    return response
