"""AIAvatarKit's realtime WebSocket at `/ws`, as a Channels consumer
(docs/wire-protocols.md#realtime-voice-ws).

Thin by design: admission (`admission`), the socket's state (`connection`), message parsing
and rendering (`messages`), listening (`listening`) and turn relaying (`relaying`) each live
in their own module; this class routes what arrives to them. Turns run through
`run_session_turn`, so a new utterance interrupts the reply in progress; with barge-in on
(AIAvatarKit's default) the reply already stops once the user has spoken for
`barge_in_after` seconds.

Audio frames are the hot path (31 a second per microphone): they are read by a loop of the
consumer's own rather than through a task per message, they skip Channels' per-message
database housekeeping, which is a thread round trip, and the work that does reach the database
(the start of a session, typed turns, the first read of a spoken turn) runs it itself
(docs/benchmarks.md#where-the-time-goes). Nor does a frame wait for its VAD verdict: it joins
the socket's backlog, and one task hears the backlog frame by frame, the whole of it scored in
one trip to Silero's thread however many frames queued up behind a busy loop. Any other message
first waits until the audio before it has been heard, so messages keep their order.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

from asgiref.sync import sync_to_async
from asgiref.typing import (
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    WebSocketReceiveEvent,
)
from channels.db import aclose_old_connections
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from conversations.admission import AdmittedSession
from conversations.history import OpenedContext
from conversations.pipeline.announcing import announce
from conversations.pipeline.events import TurnEvent, TurnStarted
from conversations.pipeline.session_data import remember_speed
from conversations.pipeline.sessions import interrupt_session, run_session_turn
from conversations.speech.audio import AudioError, speech_input
from conversations.transports.aiavatar_wire import AIAvatarRequest, speech_speed
from conversations.transports.base import Rejected

from . import live, messages
from .admission import admit_socket, credentials, keep_alive, register
from .connection import Connection
from .database import refresh_connections
from .listening import Listener, PartialTranscripts
from .messages import AudioFrame, ClientError
from .models import LiveSession
from .relaying import TurnRelay

logger = logging.getLogger(__name__)

POLICY_VIOLATION = 1008  # refused handshake: "Invalid or missing API Key"
# Servers may only send 1000 or an application code (3000-4999); 4009 mirrors 1009.
MESSAGE_TOO_BIG = 4009
# What the consumer's own reading loop hands Channels when it ends (VoiceConsumer.__call__).
_CLIENT_ENDED: dict[str, Any] = {"type": "client.ended"}


@dataclass(frozen=True, slots=True)
class TurnInputs:
    """What a client's message gives a turn."""

    text: str = ""
    audio: bytes | None = None
    files: list[dict[str, str]] = field(default_factory=list)
    system_prompt_params: dict[str, Any] = field(default_factory=dict)


class VoiceConsumer(AsyncWebsocketConsumer):
    connection: Connection | None = None  # None: the socket was refused
    listener: Listener | None = None  # from `start` on
    partials: PartialTranscripts | None = None
    heartbeat: asyncio.Task[None] | None = None  # renews the live-session row, from `start` on
    hearing: asyncio.Task[None] | None = None  # hears the backlog while audio arrives
    groups_joined: list[str]

    async def connect(self) -> None:
        self.relay = TurnRelay(lambda text: self.send(text))
        self.groups_joined = []
        self.backlog: list[bytes] = []  # audio frames received, not yet heard
        token, subprotocol = credentials(self.scope)
        try:
            admitted = await sync_to_async(admit_socket)(self.scope, token)
        except Rejected as rejected:
            await self.accept(subprotocol)
            await self.relay.send_now(messages.error(None, rejected.message))
            # 4000 + the HTTP status: 4404 unknown character, 4429 over the key's limits.
            await self.close(code=4000 + rejected.status)
            return
        if admitted is None:
            # Before accept: the handshake is refused (clients see HTTP 403).
            await self.close(code=POLICY_VIOLATION)
            return
        self.connection = Connection(*admitted)
        await self.accept(subprotocol)

    async def disconnect(self, code: int) -> None:
        if self.heartbeat is not None:
            self.heartbeat.cancel()
        if self.hearing is not None:
            self.hearing.cancel()
            await asyncio.gather(self.hearing, return_exceptions=True)
        await self.relay.close()
        if self.partials is not None:
            await self.partials.close()
        if self.listener is not None:
            self.listener.close()
        await self._leave_groups()
        await LiveSession.objects.filter(channel_name=self.channel_name).adelete()
        if self.connection is not None:
            await sync_to_async(self.connection.stream_slot.release)()

    async def __call__(
        self, scope: Any, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        """Channels' consumer, except that the client's messages are read by one loop of their
        own: Channels waits on the client and the channel layer together with a new task and
        an `asyncio.wait` for every message, 31 times a second per microphone. Here it waits
        on the channel layer and on that loop, which ends (StopConsumer on disconnect, or an
        error) as Channels' own reading would."""
        self._dispatching = asyncio.Lock()  # one message handled at a time, as in Channels

        async def client_messages() -> ASGIReceiveEvent:
            try:
                while True:
                    await self.dispatch(cast(dict[str, Any], await receive()))
            except Exception as exc:  # StopConsumer too
                # Raised from this task, it would stop Channels' clean-up before it cancels
                # the wait on the channel layer: it is raised from Channels' own loop instead.
                self._client_ended = exc
                return cast(ASGIReceiveEvent, _CLIENT_ENDED)

        await super().__call__(scope, client_messages, send)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """What a client sends skips Channels' database housekeeping before each message (one
        thread round trip per 32 ms audio frame); `receive` runs it for the messages that reach
        the database, `_turn_events` for spoken turns. Everything else (connect, disconnect,
        live control) keeps Channels' own dispatch."""
        if message is _CLIENT_ENDED:
            raise self._client_ended
        async with self._dispatching:
            if message["type"] == "websocket.receive":
                await self.websocket_receive(cast(WebSocketReceiveEvent, message))
            else:
                await super().dispatch(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        connection = self.connection
        if connection is None:  # refused: closing, nothing it says counts
            return
        size = len(text_data) if text_data is not None else len(bytes_data or b"")
        if size > settings.REALTIME_MAX_MESSAGE_BYTES:
            await self._error(
                f"Message is larger than {settings.REALTIME_MAX_MESSAGE_BYTES} bytes."
            )
            await self.close(code=MESSAGE_TOO_BIG)
            return
        try:
            if text_data is None:
                await self._data(connection, messages.binary_frame(bytes_data or b"", connection))
                return
            message = messages.parse(text_data, connection.session_id)
            if isinstance(message, AudioFrame):
                await self._data(connection, message)
                return
            if message.type == "data":
                await self._data(connection, messages.json_frame(message))
                return
            if self.hearing is not None:  # the audio sent before this message comes first
                await asyncio.gather(self.hearing, return_exceptions=True)
            await aclose_old_connections()  # what Channels' dispatch would have done
            match message.type:
                case "start":
                    await self._start(connection, message)
                case "invoke":
                    await self._invoke(connection, message)
                case "config":
                    await self._configure(connection, message.metadata or {})
                case "stop":
                    await self.close()
                case "interrupt":
                    await self.live_interrupt({})
        except ClientError as exc:
            await self._error(str(exc))

    async def _start(self, connection: Connection, message: AIAvatarRequest) -> None:
        assert message.session_id
        metadata = message.metadata or {}
        try:
            user_id = connection.caller.user(message.user_id)
        except Rejected as rejected:
            raise ClientError(rejected.message) from None
        session, connection.user_id = await sync_to_async(register)(
            self.channel_name,
            connection.caller,
            connection.character,
            message.session_id,
            user_id,
            metadata,
        )
        connection.session, connection.session_id = session, message.session_id
        if self.heartbeat is None:
            self.heartbeat = asyncio.create_task(keep_alive(self.channel_name))
        connection.continue_in(message.context_id)
        if self.listener is None:
            self.listener = Listener(self.channel_name)
            self.partials = PartialTranscripts(connection.character, self.listener)
        self.listener.use_turn_end_hook(connection.character, message.session_id)
        await self._configure(connection, metadata)
        if "response_audio_chunk_size" in metadata:
            connection.pcm_slice_bytes = metadata["response_audio_chunk_size"]
        await self._leave_groups()
        self.groups_joined = await live.join(self.channel_layer, self.channel_name, session)
        await self.relay.send_now(messages.connected(connection, message.context_id))

    async def _data(self, connection: Connection, frame: AudioFrame) -> None:
        """Queue the frame's audio for the hearing task (started when none runs)."""
        self.backlog.append(frame.pcm)
        if self.hearing is None or self.hearing.done():
            self.hearing = asyncio.create_task(self._hear_backlog(connection))

    async def _hear_backlog(self, connection: Connection) -> None:
        """Hear the queued frames one by one (barge-in, partials and turns react to each as
        if it came alone), each with the audio queued behind it for the VAD to score ahead."""
        while self.backlog:
            frames, self.backlog = self.backlog, []
            queued = memoryview(b"".join(frames))
            end = 0
            try:
                for pcm in frames:
                    end += len(pcm)
                    try:
                        await self._hear(connection, pcm, queued[end:])
                    except ClientError as exc:
                        await self._error(str(exc))
                    # What the frame started (a partial transcript's request) gets its turn on
                    # the loop before the next frame, as between frames arriving one by one.
                    await asyncio.sleep(0)
            except Exception:
                logger.exception("hearing the audio failed; closing the socket")
                self.backlog = []
                await self.close(code=1011)

    async def _hear(self, connection: Connection, pcm: bytes, ahead: memoryview) -> None:
        assert self.listener is not None and self.partials is not None
        heard = await self.listener.hear(pcm, ahead=ahead)
        if heard.voiced and connection.send_voiced:
            await self.relay.send_now(messages.voiced(connection))
        if (
            connection.barges_in
            and self.relay.speaking
            and self.listener.barges_in(heard, connection.barge_in_after)
        ):
            await self._stop_reply(connection)
        for utterance in heard.utterances:
            await self.partials.finish()
            await self._accept_turn(connection, TurnInputs(audio=utterance.pcm))
        if connection.send_partial and not heard.utterances:
            self.partials.update(
                connection.session_id or "",
                lambda text: self.relay.send_now(messages.partial(connection, text)),
            )

    async def _invoke(self, connection: Connection, message: AIAvatarRequest) -> None:
        audio = message.audio()
        if audio is not None:
            try:
                audio = speech_input(audio)
            except AudioError as exc:
                raise ClientError(str(exc)) from None
        if not (message.text or audio):
            raise ClientError("invoke needs text or audio_data.")
        await self._configure(connection, message.metadata or {})
        connection.continue_in(message.context_id)
        inputs = TurnInputs(
            text=message.text or "",
            audio=audio,
            files=message.files or [],
            system_prompt_params=message.system_prompt_params or {},
        )
        await self._accept_turn(connection, inputs, wait_in_queue=message.wait_in_queue)

    async def _configure(self, connection: Connection, metadata: dict[str, Any]) -> None:
        """Session settings from start, config or invoke metadata; they hold until changed.
        The speech speed is kept with the session's data, so microphone turns use it too."""
        if (speed := speech_speed(metadata)) is not None and connection.session is not None:
            await remember_speed(connection.session.key, speed)
        connection.configure(metadata, self.listener)

    async def _accept_turn(
        self, connection: Connection, inputs: TurnInputs, *, wait_in_queue: bool = False
    ) -> None:
        """Start a turn: say so at once, then run it in a task so this socket keeps reading."""
        waits = wait_in_queue and connection.character.use_turn_queue
        turn_id = uuid.uuid4()  # AIAvatarKit's transaction_id, from `accepted` on
        if not connection.barges_in and self.listener is not None and self.partials is not None:
            # What the user is saying will not be a turn: nor will its partial text arrive.
            self.listener.forget_speech()
            await self.partials.finish()
        transaction, barging_in = await self.relay.open_turn(connection, turn_id, waits=waits)
        events = self._turn_events(connection, turn_id, inputs, wait_in_queue)
        stop_first = not (waits or barging_in)
        self.relay.start(connection, transaction, events, stop_first=stop_first, turn_id=turn_id)

    async def _turn_events(
        self, connection: Connection, turn_id: uuid.UUID, inputs: TurnInputs, wait_in_queue: bool
    ) -> AsyncIterator[TurnEvent]:
        session = connection.session
        assert session is not None
        context = await sync_to_async(_reopen)(session, connection.context_id)
        request = session.turn(
            context,
            turn_id=turn_id,
            face_frames=connection.avatar_frames,
            text=inputs.text,
            audio=inputs.audio,
            files=inputs.files,
            system_prompt_params=inputs.system_prompt_params,
        )
        async for event in run_session_turn(request, wait_in_queue=wait_in_queue):
            if isinstance(event, TurnStarted):
                # Later voice turns continue this conversation.
                connection.context_id = event.context_id
            yield event

    # Live control: staff reach the socket through its channel-layer groups (live.py).

    async def live_speak(self, message: dict[str, Any]) -> None:
        """Say an operator's text: a turn of its own that cuts the current one short."""
        connection = self.connection
        if connection is None or connection.session is None:
            return
        text = str(message.get("text", ""))[: live.MAX_SPEAK_CHARS]
        # First, so nothing more of the reply being cut short goes out.
        transaction = await self.relay.take_over(connection)
        await interrupt_session(connection.session.key)
        spoken = announce(connection.character, text, connection.context_id)
        self.relay.start(connection, transaction, spoken, stop_first=False, turn_id=None)

    async def live_interrupt(self, message: dict[str, Any]) -> None:
        """Stop the current reply (an operator's command, or the user's own `interrupt`): the
        client stops playing, the turn ends `interrupted`."""
        connection = self.connection
        if connection is None or connection.session is None:
            return
        await self._stop_reply(connection)

    async def _stop_reply(self, connection: Connection) -> None:
        """The client stops playing and the running turn is cancelled (barge-in, interrupt)."""
        await self.relay.stop(connection)
        if connection.session is not None:
            await interrupt_session(connection.session.key)

    async def _error(self, error: str) -> None:
        await self.relay.send_now(messages.error(self.connection, error))

    async def _leave_groups(self) -> None:
        await live.leave(self.channel_layer, self.channel_name, self.groups_joined)
        self.groups_joined = []


def _reopen(session: AdmittedSession, context_id: uuid.UUID | None) -> OpenedContext:
    """The turn's conversation, after the housekeeping that audio frames skipped (a spoken
    turn's first database work), in the same thread round trip."""
    refresh_connections()
    return session.reopen(context_id)
