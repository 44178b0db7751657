"""Turns on one `/ws` socket: each runs in a task of its own (so frames keep flowing and
barge-in works while a reply streams) and is a *transaction*; its events go out only while it
is current, so nothing of a superseded reply follows the newer one. Sends are serialised by
one lock per socket. The relay also knows whether the character is still speaking: a turn is
streaming, or the audio sent so far has not had the time to play."""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from conversations.pipeline.events import TurnChunk, TurnEvent, TurnStarted
from conversations.speech.audio import AudioError, read_wav

from . import messages
from .connection import Connection

logger = logging.getLogger(__name__)


class TurnRelay:
    def __init__(self, send: Callable[[str], Awaitable[None]]) -> None:
        self._send = send
        self._lock = asyncio.Lock()
        self._transactions = itertools.count(1)
        self._current: set[int] = set()  # turns whose events may still be sent
        self._running: set[int] = set()
        self._muted: set[int] = set()  # stopped turns: their chunks are dropped, their end sent
        self._tasks: set[asyncio.Task[None]] = set()
        self._had_turn = False
        self._playing_until = 0.0  # event-loop time when the audio sent so far ends playing

    async def open_turn(
        self, connection: Connection, turn_id: uuid.UUID, *, waits: bool
    ) -> tuple[int, bool]:
        """A new turn's transaction, and whether it barges in on a running reply. Says so at
        once: `final{interrupted}` for the turn before, `accepted`, and `stop` when it cuts a
        reply short. A turn that waits in the queue leaves the earlier ones current."""
        transaction = next(self._transactions)
        barging_in = bool(self._running) and not waits
        async with self._lock:
            if self._had_turn:
                await self._send(messages.cut_short(connection))
            self._had_turn = True
            self._current = {*self._current, transaction} if waits else {transaction}
            await self._send(messages.accepted(connection, turn_id))
            if barging_in:
                await self._send(messages.stop(connection))
                self._playing_until = 0.0
        return transaction, barging_in

    async def take_over(self, connection: Connection) -> int:
        """A transaction that silences every other one at once (an operator speaking)."""
        transaction = next(self._transactions)
        async with self._lock:
            self._current = {transaction}
            await self._send(messages.stop(connection))
            self._playing_until = 0.0
        return transaction

    async def stop(self, connection: Connection) -> None:
        """Stop the reply being spoken (barge-in, the user's or an operator's interrupt): the
        client drops what it has queued, and nothing more of the current turns' speech is
        sent; their ending (`final{interrupted}` once cancelled) still is."""
        async with self._lock:
            self._muted |= self._current
            await self._send(messages.stop(connection))
            self._playing_until = 0.0

    @property
    def speaking(self) -> bool:
        """A current turn is streaming, or the client may still be playing what it got (the
        audio's duration counted from when each chunk went out)."""
        if self._running & self._current - self._muted:
            return True
        return asyncio.get_running_loop().time() < self._playing_until

    def start(
        self,
        connection: Connection,
        transaction: int,
        events: AsyncIterator[TurnEvent],
        *,
        stop_first: bool,
        turn_id: uuid.UUID | None,
    ) -> None:
        """Relay the turn's events from a task of its own."""
        relay = self._relay(connection, transaction, events, stop_first=stop_first, turn_id=turn_id)
        self.spawn(relay)

    async def _relay(
        self,
        connection: Connection,
        transaction: int,
        events: AsyncIterator[TurnEvent],
        *,
        stop_first: bool,
        turn_id: uuid.UUID | None,
    ) -> None:
        self._running.add(transaction)
        try:
            async for event in events:
                if isinstance(event, TurnChunk) and transaction in self._muted:
                    continue
                if isinstance(event, TurnStarted) and stop_first:
                    await self.send(transaction, messages.stop(connection))
                for text in messages.of_event(connection, event, turn_id):
                    if not await self.send(transaction, text):
                        break  # superseded mid-chunk: the rest is stale
                else:
                    if isinstance(event, TurnChunk) and event.audio:
                        self._played(event.audio)
        except Exception:
            # The pipeline reports its own failures as events; this is a bug, not a fault.
            logger.exception("realtime turn failed unexpectedly")
            error = messages.error(connection, "Internal error in the conversation pipeline")
            await self.send(transaction, error)
        finally:
            self._running.discard(transaction)
            self._muted.discard(transaction)

    def _played(self, wav: bytes) -> None:
        try:
            seconds = read_wav(wav).duration
        except AudioError:
            return
        now = asyncio.get_running_loop().time()
        self._playing_until = max(now, self._playing_until) + seconds

    async def send(self, transaction: int, text: str) -> bool:
        """Send a turn's message unless a newer turn superseded it; False when dropped."""
        async with self._lock:
            if transaction not in self._current:
                return False
            await self._send(text)
            return True

    async def send_now(self, text: str) -> None:
        """A message that belongs to no turn (connected, voiced, info, stop, errors)."""
        async with self._lock:
            await self._send(text)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel whatever still runs, and wait for it to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
