"""Server-sent events: one `data:` line per event, flushed at once, with a keep-alive comment
whenever the turn is quiet for a while (docs/wire-protocols.md#server-sent-events)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils import timezone

from ..rate_limits import StreamSlot

logger = logging.getLogger(__name__)

_DONE = object()


async def _with_pings(
    events: AsyncIterator[str],
    interval: float,
    ping: str | None,
    slot: StreamSlot | None,
    failed: Callable[[], str],
) -> AsyncIterator[bytes]:
    """Frame `events` as SSE, interleaving pings during silences: a `: ping` comment, or a
    `ping` event for APIs that define one (Dify).

    The events are pulled by a task of their own so a slow LLM never blocks the pings; when
    the client disconnects, Django cancels this generator and the task is cancelled with it.
    This generator never raises: Django closes a response (and so gives the request's
    database connection back to the pool) only when its stream ends cleanly, so a failure
    of `events` ends the stream with the transport's `failed()` event instead.
    """
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in events:
                queue.put_nowait(event)
        except Exception:
            # The pipeline reports its own failures as events: this is a bug, not a fault.
            logger.exception("a stream failed mid-way")
            queue.put_nowait(failed())
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
    finally:
        if slot is not None:
            # In a thread (the limits storage blocks), without awaiting: this also runs when
            # the client went away and the generator is being cancelled.
            asyncio.get_running_loop().run_in_executor(None, slot.release)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def sse_response(
    events: AsyncIterator[str],
    *,
    failed: Callable[[], str],
    ping: str | None = None,
    slot: StreamSlot | None = None,
) -> StreamingHttpResponse:
    """Stream `events` (JSON strings) as SSE; `failed` is the error event that ends the stream
    if `events` raises; `ping` is an event to send instead of comments; `slot`, the API key's
    stream slot, is given back when the stream ends, however it ends."""
    response = StreamingHttpResponse(
        _with_pings(events, settings.SSE_PING_INTERVAL_SECONDS, ping, slot, failed),
        content_type="text/event-stream; charset=utf-8",
    )
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"
    return response
