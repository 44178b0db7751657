"""Per-session concurrency, in one place for every transport
(docs/turn.md#one-answer-at-a-time-per-session).

A session is one admitted client conversation stream (tenant, character, end user and
`session_id`: `TurnRequest.session_key`), so two tenants' users sending the same session id
never touch each other's turns. When a new request arrives for a session that is already
answering:
- direct mode (the default): the running turn is cancelled at once, wherever it is (LLM call,
  tool, TTS), and its stream ends with a `final` holding the partial reply, flagged
  `interrupted`; nothing of it enters the history;
- queue mode (a character setting), `wait_in_queue: false`: the same, and requests still waiting
  their turn end with `cancelled`;
- queue mode, `wait_in_queue: true`: the request waits until the session is free (FIFO).

Interruptions reach turns running in other server processes through the channel layer (Redis
in production): each process listens on one channel and joins a group per busy session.
Waiting for a turn in another process is not coordinated; a queued request there starts at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import cast

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from conversations.history import refresh_context

from .events import TurnCancelled, TurnChunk, TurnEvent, TurnFinished, TurnRequest
from .turn import run_turn

logger = logging.getLogger(__name__)

_DONE = object()


def _group(key: str) -> str:
    # Group names allow only a restricted alphabet and length; a digest fits both.
    return "turns." + hashlib.sha256(key.encode()).hexdigest()[:40]


@dataclass(eq=False)
class _Turn:
    """A turn in progress (or waiting for its session) in this process."""

    request: TurnRequest
    task: asyncio.Task[None] | None = None
    interrupted: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled_while_waiting: asyncio.Event = field(default_factory=asyncio.Event)


class SessionTurns:
    """The turns of this process, per session; one instance per event loop."""

    def __init__(self) -> None:
        self.process_id = uuid.uuid4().hex
        self._sessions: dict[str, list[_Turn]] = {}  # running first, then waiting
        self._channel: str | None = None
        self._listener: asyncio.Task[None] | None = None

    async def run(
        self, request: TurnRequest, wait_in_queue: bool = False
    ) -> AsyncIterator[TurnEvent]:
        key = request.session_key
        turn = _Turn(request)
        queue_mode = request.character.use_turn_queue
        wait = queue_mode and wait_in_queue
        if not wait:
            await self._interrupt(key, cancel_waiting=queue_mode)
        turns = self._sessions.setdefault(key, [])
        ahead = [t for t in turns if not t.done.is_set()]
        turns.append(turn)
        await self._watch(key)
        try:
            if wait and ahead:
                waiting = asyncio.create_task(ahead[-1].done.wait())
                cancelled = asyncio.create_task(turn.cancelled_while_waiting.wait())
                try:
                    await asyncio.wait({waiting, cancelled}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiting.cancel()
                    cancelled.cancel()
                if turn.cancelled_while_waiting.is_set():
                    yield TurnCancelled(context_id=request.context.context_id)
                    return
                request.context = await sync_to_async(refresh_context)(
                    request.character, request.end_user, request.context
                )
            async for event in self._relay(turn):
                yield event
        finally:
            turn.done.set()
            turns.remove(turn)
            if not turns:
                del self._sessions[key]
                await self._unwatch(key)

    async def _relay(self, turn: _Turn) -> AsyncIterator[TurnEvent]:
        """Run the turn in a task of its own, so an interruption can cancel it at once."""
        queue: asyncio.Queue[object] = asyncio.Queue()

        async def produce() -> None:
            try:
                async for event in run_turn(turn.request):
                    queue.put_nowait(event)
            except Exception as exc:  # raised again in the stream, whose transport reports it
                queue.put_nowait(exc)
            finally:
                queue.put_nowait(_DONE)

        turn.task = asyncio.create_task(produce())
        chunks: list[TurnChunk] = []
        finished = False
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, Exception):
                    raise item
                event = cast(TurnEvent, item)
                if isinstance(event, TurnChunk):
                    chunks.append(event)
                finished = finished or isinstance(event, TurnFinished)
                yield event
            if turn.interrupted and not finished:
                yield TurnFinished(
                    context_id=turn.request.context.context_id,
                    text="".join(c.text for c in chunks),
                    voice_text=" ".join(c.voice_text for c in chunks if c.voice_text),
                    vision_source=None,
                    interrupted=True,
                )
        finally:
            if not turn.task.done():
                turn.task.cancel()
            await asyncio.gather(turn.task, return_exceptions=True)

    async def _interrupt(self, key: str, *, cancel_waiting: bool) -> None:
        self.interrupt_locally(key, cancel_waiting=cancel_waiting)
        layer = get_channel_layer()
        if layer is not None:
            message = {
                "type": "turns.interrupt",
                "key": key,
                "origin": self.process_id,
                "cancel_waiting": cancel_waiting,
            }
            await _tolerated("interrupt", layer.group_send(_group(key), message))

    async def interrupt(self, key: str) -> None:
        await self._interrupt(key, cancel_waiting=False)

    def interrupt_locally(self, key: str, *, cancel_waiting: bool) -> None:
        for turn in self._sessions.get(key, []):
            if turn.task is not None and not turn.task.done():
                turn.interrupted = True
                turn.task.cancel()
            elif turn.task is None and cancel_waiting:
                turn.cancelled_while_waiting.set()

    async def _watch(self, key: str) -> None:
        """Join the session's group so other processes can interrupt its turns here."""
        layer = get_channel_layer()
        if layer is None:
            return
        if self._channel is None:
            self._channel = await layer.new_channel()
            self._listener = asyncio.create_task(self._listen(self._channel))
        await _tolerated("watch", layer.group_add(_group(key), self._channel))

    async def _unwatch(self, key: str) -> None:
        layer = get_channel_layer()
        if layer is not None and self._channel is not None:
            await _tolerated("unwatch", layer.group_discard(_group(key), self._channel))

    async def _listen(self, channel: str) -> None:
        layer = get_channel_layer()
        assert layer is not None
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("session interrupt listener failed; retrying")
                await asyncio.sleep(1)
                continue
            if message.get("type") == "turns.interrupt" and message["origin"] != self.process_id:
                self.interrupt_locally(message["key"], cancel_waiting=message["cancel_waiting"])


async def _tolerated(what: str, call: Awaitable[None]) -> None:
    """A channel-layer call that may fail (Redis unreachable): the turn goes on, and turns of
    this process still coordinate; only other processes miss the message until it is back."""
    try:
        await call
    except Exception as exc:
        logger.warning("channel layer unavailable (%s: %r); sessions coordinate locally", what, exc)


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SessionTurns] = (
    weakref.WeakKeyDictionary()
)


def session_turns() -> SessionTurns:
    """This event loop's coordinator (one per server process in production)."""
    loop = asyncio.get_running_loop()
    coordinator = _per_loop.get(loop)
    if coordinator is None:
        coordinator = _per_loop[loop] = SessionTurns()
    return coordinator


async def run_session_turn(
    request: TurnRequest, *, wait_in_queue: bool = False
) -> AsyncIterator[TurnEvent]:
    """Run a turn under its session's concurrency rules: what every transport calls."""
    async for event in session_turns().run(request, wait_in_queue):
        yield event


async def interrupt_session(session_key: str) -> None:
    """Cut the admitted session's running turn short, wherever it runs (live control): its
    stream ends with an interrupted `final`, as when a newer request arrives."""
    await session_turns().interrupt(session_key)
