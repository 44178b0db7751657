"""AIAvatarKit's realtime WebSocket at `/ws`, as a Channels consumer
(docs/wire-protocols.md#realtime-voice-ws).

Thin by design: it authenticates, parses the envelope, feeds `data` frames to the session's
server-side VAD (conversations.pipeline.voice), runs each turn through `run_session_turn` in a
task of its own (so frames keep flowing and barge-in works while a reply streams), and writes
the pipeline's events in AIAvatarKit's envelope. Sends are serialised by one lock per socket;
each turn is a transaction, and events of a superseded one are dropped.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from pydantic import ValidationError

from characters.models import Character
from conversations.admission import (
    AdmittedSession,
    Caller,
    admit_session,
    find_character,
    identify,
)
from conversations.pipeline.announcing import announce
from conversations.pipeline.events import TurnChunk, TurnEvent, TurnStarted
from conversations.pipeline.session_data import remember_speed
from conversations.pipeline.sessions import interrupt_session, run_session_turn
from conversations.pipeline.voice import Listener
from conversations.rate_limits import StreamSlot
from conversations.speech.audio import AudioError, speech_input
from conversations.speech.stt import SpeechRecognizer, STTError
from conversations.speech.voices import recognizer_for
from conversations.transports.aiavatar_wire import (
    AIAvatarRequest,
    envelope,
    error_envelope,
    event_envelope,
    pcm_chunk_envelopes,
    speech_speed,
)
from conversations.transports.base import Rejected, bearer_token, problems
from conversations.transports.text import json_problem

from . import live
from .models import LiveSession

logger = logging.getLogger(__name__)

CHANNEL = "websocket"
SUBPROTOCOL_PREFIX = "Authorization."
POLICY_VIOLATION = 1008  # refused handshake: "Invalid or missing API Key"
# Servers may only send 1000 or an application code (3000-4999); 4009 mirrors 1009.
MESSAGE_TOO_BIG = 4009
# `interrupt` is ours (not AIAvatarKit's): the user's "stop talking" button.
MESSAGE_TYPES = ("start", "data", "invoke", "config", "stop", "interrupt")


def credentials(scope: Mapping[str, Any]) -> tuple[str, str | None]:
    """The API key from `Authorization: Bearer`, else from an `Authorization.<base64(key)>`
    subprotocol (browsers cannot set headers), with the subprotocol to echo."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
    token = bearer_token({"Authorization": headers.get("authorization", "")})
    if token:
        return token, None
    for protocol in scope.get("subprotocols", []):
        if not protocol.startswith(SUBPROTOCOL_PREFIX):
            continue
        encoded = protocol[len(SUBPROTOCOL_PREFIX) :]
        # Padding may be stripped; "/" is not allowed in a subprotocol, so accept URL-safe too.
        encoded = encoded.replace("+", "-").replace("/", "_") + "=" * (-len(encoded) % 4)
        try:
            return base64.urlsafe_b64decode(encoded).decode(), protocol
        except (binascii.Error, ValueError):
            continue
    return "", None


def _admit(scope: Mapping[str, Any], token: str) -> tuple[Caller, Character, StreamSlot] | None:
    """Who is calling, the character this socket talks to and the key's stream slot it holds,
    or None when the credential is wrong. A browser token may come as `?token=`. Raises
    `Rejected` for a character the caller cannot reach, or over the key's limits."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
    presented = {
        "Authorization": f"Bearer {token}" if token else "",
        "Origin": headers.get("origin", ""),
        "Host": headers.get("host", ""),
    }
    try:
        caller = identify(presented, (query.get("token") or [""])[0] or None)
    except Rejected as rejected:
        if rejected.status == 401:
            return None
        raise
    slug = (query.get("character") or [""])[0] or headers.get("x-character")
    character = find_character(caller, slug)
    return caller, character, caller.open_stream()


def _register(
    channel_name: str,
    caller: Caller,
    character: Character,
    session_id: str,
    user_id: str | None,
    metadata: dict[str, Any],
) -> tuple[AdmittedSession, str]:
    """Bind the socket to its admitted session (who is talking) and the row staff see it by."""
    session = admit_session(
        caller, character, channel=CHANNEL, user_id=user_id, session_id=session_id
    )
    user_id = user_id or str(session.end_user.id)
    LiveSession.objects.update_or_create(
        channel_name=channel_name,
        defaults={
            "tenant_id": caller.tenant_id,
            "session_id": session_id,
            "user_id": user_id,
            "end_user": session.end_user,
            "character": character,
            "metadata": metadata,
        },
    )
    return session, user_id


class ClientError(Exception):
    """A message this socket cannot act on; the text goes back in an `error` message."""


class VoiceConsumer(AsyncWebsocketConsumer):
    caller: Caller
    character: Character
    stream_slot: StreamSlot | None = None  # one of the key's concurrent streams
    session: AdmittedSession | None = None  # once `start` has admitted it
    session_id: str | None = None
    user_id: str | None = None
    listener: Listener | None = None

    async def connect(self) -> None:
        self.send_lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()
        self.transactions = itertools.count(1)
        self.live_transactions: set[int] = set()  # turns whose events may still be sent
        self.running: set[int] = set()
        self.had_turn = False
        self.groups_joined: list[str] = []
        self.context_id: uuid.UUID | None = None
        self.barge_in = False
        self.send_voiced = False
        self.send_partial = False
        self.avatar_frames = False
        self.recognizer: SpeechRecognizer | None = None
        self.partial_task: asyncio.Task[None] | None = None
        self.partial_heard = 0
        self.pcm_slice_bytes = settings.REALTIME_AUDIO_CHUNK_BYTES
        token, subprotocol = credentials(self.scope)
        try:
            admitted = await sync_to_async(_admit)(self.scope, token)
        except Rejected as rejected:
            await self.accept(subprotocol)
            await self._error(rejected.message)
            # 4000 + the HTTP status: 4404 unknown character, 4429 over the key's limits.
            await self.close(code=4000 + rejected.status)
            return
        if admitted is None:
            # Before accept: the handshake is refused (clients see HTTP 403).
            await self.close(code=POLICY_VIOLATION)
            return
        self.caller, self.character, self.stream_slot = admitted
        await self.accept(subprotocol)

    async def disconnect(self, code: int) -> None:
        tasks = [*self.tasks, *([self.partial_task] if self.partial_task else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.listener is not None:
            self.listener.close()
        await self._leave_groups()
        await LiveSession.objects.filter(channel_name=self.channel_name).adelete()
        if self.stream_slot is not None:
            await sync_to_async(self.stream_slot.release)()

    # --- client messages -----------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            await self._error("Binary frames are not supported: send JSON text frames.")
            return
        if len(text_data) > settings.REALTIME_MAX_MESSAGE_BYTES:
            await self._error(
                f"Message is larger than {settings.REALTIME_MAX_MESSAGE_BYTES} bytes."
            )
            await self.close(code=MESSAGE_TOO_BIG)
            return
        try:
            message = self._parse(text_data)
            match message.type:
                case "start":
                    await self._start(message)
                case "data":
                    await self._data(message)
                case "invoke":
                    await self._invoke(message)
                case "config":
                    await self._configure(message.metadata or {})
                case "stop":
                    await self.close()
                case "interrupt":
                    await self.live_interrupt({})
        except ClientError as exc:
            await self._error(str(exc))

    def _parse(self, text: str) -> AIAvatarRequest:
        try:
            raw = json.loads(text)
        except ValueError:
            raise ClientError("Message is not valid JSON.") from None
        if not isinstance(raw, dict):
            raise ClientError("Message must be a JSON object.")
        if (problem := json_problem(raw, "message")) is not None:
            raise ClientError(f"Invalid message: {problem}")
        try:
            message = AIAvatarRequest.model_validate(raw)
        except ValidationError as exc:
            raise ClientError(f"Invalid message: {problems(exc, 'message')}") from None
        if message.type not in MESSAGE_TYPES:
            raise ClientError(
                f"Unknown message type {message.type!r}: expected {', '.join(MESSAGE_TYPES)}."
            )
        if not message.session_id:
            raise ClientError("session_id is required.")
        if message.type != "start" and message.session_id != self.session_id:
            if self.session_id is None:
                raise ClientError("Send a start message before anything else.")
            raise ClientError(f"This socket carries session {self.session_id!r}.")
        return message

    async def _start(self, message: AIAvatarRequest) -> None:
        assert message.session_id
        metadata = message.metadata or {}
        try:
            user_id = self.caller.user(message.user_id)
        except Rejected as rejected:
            raise ClientError(rejected.message) from None
        self.session, self.user_id = await sync_to_async(_register)(
            self.channel_name,
            self.caller,
            self.character,
            message.session_id,
            user_id,
            metadata,
        )
        self.session_id = message.session_id
        if message.context_id:
            self.context_id = uuid.UUID(message.context_id)
        if self.listener is None:
            self.listener = Listener(self.channel_name)
        await self._configure(metadata)
        if "response_audio_chunk_size" in metadata:
            self.pcm_slice_bytes = metadata["response_audio_chunk_size"]
        await self._leave_groups()
        for group in (
            live.session_group(self.session.key),
            live.user_group(self.session.end_user.pk),
            live.character_group(self.character.pk),
        ):
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        connected: dict[str, Any] = {"charactername": self.character.name}
        if self.session.end_user.display_name:
            connected["username"] = self.session.end_user.display_name
        await self._send_now(
            envelope(
                "connected",
                session_id=self.session_id,
                user_id=self.user_id,
                context_id=message.context_id,
                metadata=connected,
            )
        )

    async def _configure(self, metadata: dict[str, Any]) -> None:
        """Session settings from start, config or invoke metadata; they hold until changed.
        The speech speed is kept with the session's data, so microphone turns use it too."""
        if (speed := speech_speed(metadata)) is not None and self.session is not None:
            await remember_speed(self.session.key, speed)
        if isinstance(metadata.get("barge_in_enabled"), bool):
            self.barge_in = metadata["barge_in_enabled"]
        if isinstance(metadata.get("send_voiced"), bool):
            self.send_voiced = metadata["send_voiced"]
        if isinstance(metadata.get("send_partial_text"), bool):
            self.send_partial = metadata["send_partial_text"]
        if isinstance(metadata.get("avatar_frames"), bool):
            self.avatar_frames = metadata["avatar_frames"]
        db = metadata.get("volume_db_threshold")
        if self.listener is not None and isinstance(db, int | float) and db:
            self.listener.set_volume_threshold(float(db))

    async def _data(self, message: AIAvatarRequest) -> None:
        assert self.listener is not None
        pcm = message.audio()
        if not pcm or len(pcm) % 2:
            raise ClientError("data needs audio_data: base64 PCM16LE mono samples.")
        heard = await self.listener.hear(pcm)
        if heard.voiced and self.send_voiced:
            await self._send_now(envelope("voiced", session_id=self.session_id, user_id=None))
        for utterance in heard.utterances:
            self.partial_heard = 0
            await self._accept_turn(audio=utterance.pcm)
        if self.send_partial and not heard.utterances:
            self._maybe_partial()

    async def _invoke(self, message: AIAvatarRequest) -> None:
        audio = message.audio()
        if audio is not None:
            try:
                audio = speech_input(audio)
            except AudioError as exc:
                raise ClientError(str(exc)) from None
        if not (message.text or audio):
            raise ClientError("invoke needs text or audio_data.")
        await self._configure(message.metadata or {})
        if message.context_id:
            self.context_id = uuid.UUID(message.context_id)
        await self._accept_turn(
            text=message.text or "",
            audio=audio,
            files=message.files or [],
            params=message.system_prompt_params or {},
            wait_in_queue=message.wait_in_queue,
        )

    # --- turns ---------------------------------------------------------------------------

    async def _accept_turn(
        self,
        *,
        text: str = "",
        audio: bytes | None = None,
        files: list[dict[str, str]] | None = None,
        params: dict[str, Any] | None = None,
        wait_in_queue: bool = False,
    ) -> None:
        """Start a turn: announce it (`final{interrupted}`, `accepted`, and `stop` at once when
        it cuts a reply short), then run it in a task so this socket keeps reading."""
        waits = wait_in_queue and self.character.use_turn_queue
        transaction = next(self.transactions)
        turn_id = uuid.uuid4()  # AIAvatarKit's transaction_id, from `accepted` on
        barging_in = bool(self.running) and not waits
        async with self.send_lock:
            if self.had_turn:
                await self.send(
                    envelope(
                        "final",
                        session_id=self.session_id,
                        user_id=None,
                        text="",
                        voice_text="",
                        metadata={"interrupted": True},
                    )
                )
            self.had_turn = True
            self.live_transactions = (
                {*self.live_transactions, transaction} if waits else {transaction}
            )
            await self.send(
                envelope(
                    "accepted",
                    session_id=self.session_id,
                    user_id=None,
                    transaction_id=str(turn_id),
                    metadata={"block_barge_in": False},
                )
            )
            if barging_in:
                await self.send(self._stop())
        if not self.barge_in and self.listener is not None:
            self.listener.forget_speech()
        turn = {
            "turn_id": turn_id,
            "text": text,
            "audio": audio,
            "files": files or [],
            "system_prompt_params": params or {},
            "face_frames": self.avatar_frames,
        }
        events = self._turn_events(turn, wait_in_queue)
        self._spawn(self._relay(transaction, events, stop_first=not (waits or barging_in)))

    async def _turn_events(
        self, turn: dict[str, Any], wait_in_queue: bool
    ) -> AsyncIterator[tuple[str | None, TurnEvent]]:
        """The turn's events, each with the turn's id (AIAvatarKit's `transaction_id`)."""
        session = self.session
        assert session is not None
        context = await sync_to_async(session.reopen)(self.context_id)
        request = session.turn(context, **turn)
        async for event in run_session_turn(request, wait_in_queue=wait_in_queue):
            if isinstance(event, TurnStarted):
                # Later voice turns continue this conversation.
                self.context_id = event.context_id
            yield str(request.turn_id), event

    async def _relay(
        self,
        transaction: int,
        events: AsyncIterator[tuple[str | None, TurnEvent]],
        *,
        stop_first: bool,
    ) -> None:
        """Send one turn's events while it is the session's current transaction."""
        self.running.add(transaction)
        try:
            async for turn_id, event in events:
                if isinstance(event, TurnStarted) and stop_first:
                    await self._send(transaction, self._stop())
                if isinstance(event, TurnChunk) and self.pcm_slice_bytes > 0:
                    for piece in pcm_chunk_envelopes(
                        event,
                        session_id=self.session_id or "",
                        user_id=self.user_id,
                        slice_bytes=self.pcm_slice_bytes,
                        transaction_id=turn_id,
                    ):
                        if not await self._send(transaction, piece):
                            break  # superseded mid-chunk: the rest is stale
                    continue
                await self._send(
                    transaction,
                    event_envelope(
                        event,
                        session_id=self.session_id or "",
                        user_id=self.user_id,
                        transaction_id=turn_id,
                    ),
                )
        except Exception:
            # The pipeline reports its own failures as events; this is a bug, not a fault.
            logger.exception("realtime turn failed unexpectedly")
            await self._send(
                transaction, self._error_envelope("Internal error in the conversation pipeline")
            )
        finally:
            self.running.discard(transaction)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _maybe_partial(self) -> None:
        """Transcribe the utterance heard so far, one request at a time, every
        REALTIME_PARTIAL_INTERVAL_SECONDS of new audio."""
        assert self.listener is not None
        pcm = self.listener.heard_so_far()
        step = int(settings.REALTIME_PARTIAL_INTERVAL_SECONDS * settings.SPEECH_SAMPLE_RATE * 2)
        if len(pcm) - self.partial_heard < step:
            return
        if self.partial_task is not None and not self.partial_task.done():
            return
        self.partial_heard = len(pcm)
        self.partial_task = asyncio.create_task(self._partial(pcm))

    async def _partial(self, pcm: bytes) -> None:
        try:
            if self.recognizer is None:
                self.recognizer = recognizer_for(self.character)
            if self.recognizer is None:
                return
            transcript = await self.recognizer.recognize(self.session_id or "", pcm)
        except STTError as exc:
            logger.info("partial transcript failed: %s", exc)
            return
        if transcript.text:
            await self._send_now(
                envelope(
                    "info",
                    session_id=self.session_id,
                    user_id=None,
                    metadata={"partial_request_text": transcript.text},
                )
            )

    # --- live control (channel layer) ----------------------------------------------------

    async def live_speak(self, message: dict[str, Any]) -> None:
        """Say an operator's text: a turn of its own that cuts the current one short."""
        if self.session is None:
            return
        text = str(message.get("text", ""))[: live.MAX_SPEAK_CHARS]
        transaction = next(self.transactions)
        async with self.send_lock:
            # First, so nothing more of the reply being cut short goes out.
            self.live_transactions = {transaction}
            await self.send(self._stop())
        await interrupt_session(self.session.key)
        spoken = _no_turn_id(announce(self.character, text, self.context_id))
        self._spawn(self._relay(transaction, spoken, stop_first=False))

    async def live_interrupt(self, message: dict[str, Any]) -> None:
        """Stop the current reply (an operator's command, or the user's own `interrupt`): the
        client stops playing, the turn ends `interrupted`."""
        if self.session is None:
            return
        await self._send_now(self._stop())
        await interrupt_session(self.session.key)

    # --- sending -------------------------------------------------------------------------

    def _stop(self) -> str:
        context_id = str(self.context_id) if self.context_id else None
        return envelope("stop", session_id=self.session_id, user_id=None, context_id=context_id)

    def _error_envelope(self, error: str) -> str:
        return error_envelope(
            error,
            session_id=self.session_id,
            user_id=self.user_id,
            context_id=str(self.context_id) if self.context_id else None,
        )

    async def _error(self, error: str) -> None:
        await self._send_now(self._error_envelope(error))

    async def _send_now(self, text: str) -> None:
        """A message that belongs to no turn (connected, voiced, info, stop, errors)."""
        async with self.send_lock:
            await self.send(text)

    async def _send(self, transaction: int, text: str) -> bool:
        """Send a turn's event unless a newer turn superseded it; False when dropped."""
        async with self.send_lock:
            if transaction not in self.live_transactions:
                return False
            await self.send(text)
            return True

    async def _leave_groups(self) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = []


async def _no_turn_id(events: AsyncIterator[TurnEvent]) -> AsyncIterator[tuple[None, TurnEvent]]:
    """Events of something said outside any turn (an operator's text): no transaction id."""
    async for event in events:
        yield None, event
