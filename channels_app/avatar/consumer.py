"""The avatar socket: one connection, one admitted session, turns spoken as sync frames.

Admitted exactly as `/ws` is (channels_app/admission.py): an API key as `Authorization:
Bearer` (or the `Authorization.<base64>` subprotocol), or a browser token as `?token=` bound to
the page's Origin, counted against the key's request rate and concurrent streams;
`?character=<slug>` picks the character (else the credential's default). A wrong credential
refuses the handshake; an unknown (or another tenant's) character, or a key over its limits,
is an `error` then close 4000 + the HTTP status (4404, 4429). Each socket is a live session
staff see and command (`live.speak`, `live.interrupt`) like a `/ws` one.

Each turn is one task that sends, in order: `avatar_state{Responding}`, `audio_start`,
`transcript_delta`s and paced `sync_frame`s, `audio_end`, `transcript_done`,
`avatar_state{Listening}`; a producer task of its own reads the pipeline's events and animates
the next sentence meanwhile (a bounded queue between them). An interrupt cancels the turn's
task (and with it the producer) first, so no frame of the turn can follow the `interrupt`
message, whose `offsetMs` is the frames sent x 1000 / 30: audio and face stop together.

Over ~400 lines on purpose: connecting, the client's messages, live control and a turn's
producer and paced sender all act on one socket's turn in progress; the wire format and the
frame engine already live apart (wire.py, conversations/avatar/).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from channels_app import live
from channels_app.admission import admit_socket, credentials, keep_alive, register
from channels_app.listening import Listener
from channels_app.models import LiveSession
from characters.models import Character
from conversations.admission import AdmittedSession, Caller
from conversations.avatar.animator import FPS, SAMPLE_RATE, FaceFrame
from conversations.avatar.speaking import FramePacer, face_track, sentence_frames
from conversations.pipeline.announcing import announce
from conversations.pipeline.events import (
    TurnChunk,
    TurnEvent,
    TurnFailed,
    TurnFinished,
    TurnStarted,
)
from conversations.pipeline.sessions import interrupt_session, run_session_turn
from conversations.rate_limits import StreamSlot
from conversations.transports.base import Rejected
from conversations.transports.text import json_problem

from . import wire

logger = logging.getLogger(__name__)

CHANNEL = "avatar"
POLICY_VIOLATION = 1008
MAX_TEXT_CHARS = 4000
# Messages and frames prepared ahead of the clock: about 4 s of frames, then the pipeline waits.
QUEUED_ITEMS = 120


class ProtocolError(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code


@dataclass(slots=True)
class _Turn:
    turn_id: str
    task: asyncio.Task[None] | None = None
    frames_sent: int = 0
    done: bool = False  # everything of it was sent
    text: list[tuple[str, int, int]] = field(default_factory=list)  # delta, start, end ms


def _register(
    channel_name: str, caller: Caller, character: Character, slot: StreamSlot
) -> AdmittedSession:
    """The socket's session (a new end user, or a browser token's own) and its live-session
    row; the stream slot is given back if that fails."""
    try:
        session, _ = register(
            channel_name,
            caller,
            character,
            str(uuid.uuid4()),
            caller.user(None),
            {},
            channel=CHANNEL,
        )
    except BaseException:
        slot.release()
        raise
    return session


class AvatarConsumer(AsyncWebsocketConsumer):
    session: AdmittedSession | None = None
    slot: StreamSlot | None = None
    heartbeat: asyncio.Task[None] | None = None  # renews the live-session row

    async def connect(self) -> None:
        self.send_lock = asyncio.Lock()
        self.turn: _Turn | None = None
        self.listener: Listener | None = None
        self.streaming = False
        self.context_id: uuid.UUID | None = None
        self.groups: list[str] = []
        token, subprotocol = credentials(self.scope)
        try:
            admitted = await sync_to_async(admit_socket)(self.scope, token)
        except Rejected as rejected:
            await self.accept(subprotocol)
            await self.send(wire.error(rejected.code, rejected.message))
            await self.close(code=4000 + rejected.status)
            return
        if admitted is None:
            await self.close(code=POLICY_VIOLATION)  # before accept: the handshake fails
            return
        caller, character, slot = admitted
        self.session = await sync_to_async(_register)(self.channel_name, caller, character, slot)
        self.slot = slot
        self.heartbeat = asyncio.create_task(keep_alive(self.channel_name))
        self.groups = await live.join(self.channel_layer, self.channel_name, self.session)
        await self.accept(subprotocol)
        engine = face_track().engine.name
        await self._send(wire.config(settings.SPEECH_SAMPLE_RATE, engine))

    async def disconnect(self, code: int) -> None:
        if self.heartbeat is not None:
            self.heartbeat.cancel()
        await self._cancel_turn()
        if self.listener is not None:
            self.listener.close()
        await live.leave(self.channel_layer, self.channel_name, self.groups)
        if self.session is not None:
            await LiveSession.objects.filter(channel_name=self.channel_name).adelete()
        if self.slot is not None:
            await sync_to_async(self.slot.release)()

    # --- live control: staff reach the socket through its groups (channels_app/live.py) ---

    async def live_speak(self, message: dict[str, Any]) -> None:
        """Say an operator's text in the character's voice: a turn of its own, which cuts
        the one being spoken short (with its `interrupt`)."""
        if self.session is None:
            return
        text = str(message.get("text", ""))[: live.MAX_SPEAK_CHARS]
        await self._begin_turn(announce(self.session.character, text, self.context_id), False)

    async def live_interrupt(self, message: dict[str, Any]) -> None:
        """Stop the turn being spoken, as the client's own `interrupt` does."""
        await self._interrupt()

    # --- client messages -----------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.session is None:
            return
        try:
            if text_data is None:
                raise ProtocolError(
                    "INVALID_MESSAGE", "Binary frames are not supported: send JSON."
                )
            if len(text_data) > settings.REALTIME_MAX_MESSAGE_BYTES:
                raise ProtocolError(
                    "MESSAGE_TOO_LARGE",
                    f"Message is larger than {settings.REALTIME_MAX_MESSAGE_BYTES} bytes.",
                )
            await self._handle(self._parse(text_data))
        except ProtocolError as exc:
            await self._send(wire.error(exc.code, str(exc)))

    def _parse(self, text: str) -> dict[str, Any]:
        try:
            raw = json.loads(text)
        except ValueError:
            raise ProtocolError("INVALID_MESSAGE", "Message is not valid JSON.") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
            raise ProtocolError("INVALID_MESSAGE", "Message must be a JSON object with a type.")
        if (problem := json_problem(raw, "message")) is not None:
            raise ProtocolError("INVALID_MESSAGE", f"Invalid message: {problem}")
        return raw

    async def _handle(self, message: dict[str, Any]) -> None:
        match message["type"]:
            case "ping":
                await self._send(wire.message("pong"))
            case "text":
                text = message.get("data")
                if not isinstance(text, str) or not text.strip():
                    raise ProtocolError("INVALID_MESSAGE", "text needs data: a non-empty string.")
                if len(text) > MAX_TEXT_CHARS:
                    raise ProtocolError(
                        "INVALID_MESSAGE", f"text is over {MAX_TEXT_CHARS} characters."
                    )
                await self._start_turn(text=text)
            case "audio_stream_start":
                self.streaming = True
                if self.listener is None:
                    self.listener = Listener(self.channel_name)
            case "audio_stream_end":
                self.streaming = False
            case "audio":
                await self._audio(message.get("data"))
            case "interrupt":
                await self._interrupt()
            case other:
                raise ProtocolError("UNKNOWN_TYPE", f"Unknown message type {other[:40]!r}.")

    async def _audio(self, data: Any) -> None:
        if not self.streaming or self.listener is None:
            raise ProtocolError("AUDIO_NOT_STARTED", "Send audio_stream_start before audio.")
        try:
            pcm = base64.b64decode(data, validate=True) if isinstance(data, str) else b""
        except (binascii.Error, ValueError):
            raise ProtocolError("INVALID_AUDIO", "audio data is not valid base64.") from None
        if not pcm or len(pcm) % 2:
            raise ProtocolError("INVALID_AUDIO", "audio data must be base64 PCM16 samples.")
        heard = await self.listener.hear(pcm)
        for utterance in heard.utterances:
            await self._start_turn(audio=utterance.pcm)

    # --- turns ---------------------------------------------------------------------------

    async def _start_turn(self, **inputs: Any) -> None:
        """A turn of the user's: their text, or an utterance the server heard."""
        await self._begin_turn(self._turn_events(inputs), inputs.get("audio") is not None)

    async def _turn_events(self, inputs: dict[str, Any]) -> AsyncIterator[TurnEvent]:
        session = self.session
        assert session is not None
        context = await sync_to_async(session.reopen)(self.context_id)
        request = session.turn(context, **inputs)
        async for event in run_session_turn(request):
            yield event

    async def _begin_turn(self, events: AsyncIterator[TurnEvent], heard: bool) -> None:
        if self.turn is not None:
            await self._interrupt()  # a new request while speaking cuts the reply short
        turn = _Turn(turn_id=f"turn_{wire.now_ms()}_{uuid.uuid4().hex[:8]}")
        turn.task = asyncio.create_task(self._speak(turn, events, heard))
        self.turn = turn

    async def _speak(self, turn: _Turn, events: AsyncIterator[TurnEvent], heard: bool) -> None:
        """Send the turn's messages and paced frames while `_produce` prepares the next
        sentence's, so a sentence's phonemes and weights never hold up the frame clock."""
        assert self.session is not None
        session_id = self.session.session_id
        queue: asyncio.Queue[str | FaceFrame | None] = asyncio.Queue(maxsize=QUEUED_ITEMS)
        producer = asyncio.create_task(self._produce(turn, events, heard, queue))
        pacer = FramePacer()
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, FaceFrame):
                    await pacer.wait()
                    await self._send(wire.sync_frame(item, session_id, turn.turn_id))
                    turn.frames_sent += 1
                else:
                    await self._send(item)
            turn.done = True
        finally:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
            if self.turn is turn:
                self.turn = None

    async def _produce(
        self,
        turn: _Turn,
        events: AsyncIterator[TurnEvent],
        heard: bool,
        queue: asyncio.Queue[str | FaceFrame | None],
    ) -> None:
        """The turn's messages and frames, from its events (`heard`: the user's utterance,
        whose transcript is sent first)."""
        session = self.session
        assert session is not None
        track = face_track(seed=hash(turn.turn_id))
        started = False
        spoken: list[str] = []
        try:
            async for event in events:
                if isinstance(event, TurnStarted):
                    self.context_id = event.context_id
                    if heard:
                        await queue.put(
                            wire.message(
                                "transcript_done",
                                text=event.recognized_text,
                                role="user",
                                turnId=f"user_{wire.now_ms()}",
                            )
                        )
                elif isinstance(event, TurnChunk):
                    if not started:
                        started = True
                        for message in self._begin(turn, track.engine.name):
                            await queue.put(message)
                    before = track.samples_in
                    frames = await sentence_frames(track, event)
                    if event.voice_text:
                        spoken.append(event.voice_text)
                        offsets = (
                            round(before * 1000 / SAMPLE_RATE),
                            round(track.samples_in * 1000 / SAMPLE_RATE),
                        )
                        turn.text.append((event.voice_text, *offsets))
                        await queue.put(
                            wire.message(
                                "transcript_delta",
                                text=event.voice_text,
                                role="assistant",
                                turnId=turn.turn_id,
                                sessionId=session.session_id,
                                startOffset=offsets[0],
                                endOffset=offsets[1],
                            )
                        )
                    for frame in frames:
                        await queue.put(frame)
                elif isinstance(event, TurnFailed):
                    await queue.put(wire.error("TURN_FAILED", event.error, turn.turn_id))
                elif isinstance(event, TurnFinished):
                    spoken = [event.voice_text]
            if started:
                for frame in track.finish():
                    await queue.put(frame)
                await queue.put(
                    wire.message(
                        "audio_end",
                        sessionId=session.session_id,
                        turnId=turn.turn_id,
                        frames=track.frames_out,
                        durationMs=round(track.frames_out * 1000 / FPS),
                    )
                )
            await queue.put(
                wire.message(
                    "transcript_done", text=" ".join(spoken), role="assistant", turnId=turn.turn_id
                )
            )
            await queue.put(wire.message("avatar_state", state="Listening"))
        except Exception:
            logger.exception("avatar turn failed unexpectedly")
            await queue.put(
                wire.error(
                    "INTERNAL_ERROR", "Internal error in the conversation pipeline", turn.turn_id
                )
            )
        await queue.put(None)

    def _begin(self, turn: _Turn, engine: str) -> list[str]:
        assert self.session is not None
        return [
            wire.message("avatar_state", state="Responding"),
            wire.message(
                "audio_start",
                sessionId=self.session.session_id,
                turnId=turn.turn_id,
                sampleRate=SAMPLE_RATE,
                format=wire.PCM_FORMAT,
                fps=FPS,
                engine=engine,
            ),
        ]

    async def _cancel_turn(self) -> _Turn | None:
        turn, self.turn = self.turn, None
        if turn is not None and turn.task is not None:
            turn.task.cancel()
            await asyncio.gather(turn.task, return_exceptions=True)
        return turn

    async def _interrupt(self) -> None:
        """Only a turn in progress is interrupted; with none, the message is a no-op."""
        if self.turn is None or self.session is None:
            return
        await interrupt_session(self.session.key)  # the pipeline records it as interrupted
        turn = await self._cancel_turn()
        if turn is None or turn.done:
            return
        offset = round(turn.frames_sent * 1000 / FPS)
        await self._send(wire.message("interrupt", turnId=turn.turn_id, offsetMs=offset))
        await self._send(wire.message("avatar_state", state="Listening"))
        await self._send(
            wire.message(
                "transcript_done",
                text=_heard(turn.text, offset),
                role="assistant",
                turnId=turn.turn_id,
                interrupted=True,
            )
        )

    async def _send(self, text: str) -> None:
        async with self.send_lock:
            await self.send(text)


def _heard(deltas: list[tuple[str, int, int]], offset_ms: int) -> str:
    """What was said up to `offset_ms`: whole sentences that ended by then, and the share of
    the sentence being spoken that its time covers, to the last whole word."""
    said = []
    for text, start, end in deltas:
        if end <= offset_ms:
            said.append(text)
        elif start < offset_ms:
            part = text[: math.floor(len(text) * (offset_ms - start) / max(1, end - start))]
            said.append(part.rsplit(" ", 1)[0] if " " in part else part)
    return " ".join(s for s in said if s)
