"""One Live Avatar platform session with a character as its agent
(docs/avatar.md#the-live-avatar-agent).

`AgentSession.run()` starts a session over REST, connects to the agent socket the platform
names, answers every `session.init` (the first message of each connection) with
`session.ready`, and serves the session until the operator stops it, the platform closes it
(`session.closing`), or reconnecting fails. A dropped socket is reconnected to the same URL
after 1 s, 2 s, 4 s... (LIVEAVATAR_RECONNECT_*), with a fresh handshake; a 4xxx close code or a
`session.init` for another session ends the session at once.

Requests become turns of the character's pipeline, as on every other transport: typed text and
the platform's own transcripts (`input.text`, `input.asr.final`, once per requestId), and with
developer ASR the user's audio frames, heard by the server's VAD and speech-to-text. New user
input cancels the answer in progress (`response.cancel` for it) before the next one starts.

Over ~400 lines on purpose: the connection's lifecycle, the platform's events and the answers
they start share one session's state (the answer in progress, the utterance being heard, the
socket of the moment); split apart, each piece would reach into the others' state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator
from itertools import count
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from avatarsite.tenants import crypto
from channels_app.listening import Listener, PartialTranscripts, barge_in_seconds
from characters.models import Character
from conversations.admission import AdmittedSession, Caller, admit_session
from conversations.pipeline.announcing import announce
from conversations.pipeline.events import (
    TurnChunk,
    TurnDropped,
    TurnEvent,
    TurnFailed,
    TurnStarted,
)
from conversations.pipeline.sessions import interrupt_session, run_session_turn
from conversations.speech.audio import resample_pcm
from conversations.transports.text import text_problem

from .models import State
from .platform import AgentConfig, report, start_session
from .protocol import PCM, AudioFrame, FrameError, Reorder, Started, event
from .speaking import OwnVoice, PlatformVoice, Response

logger = logging.getLogger(__name__)

CHANNEL = "liveavatar"


class SessionFailed(Exception):
    """The session cannot go on: the worker reports it and starts a new one later."""


class AgentSession:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.ws: ClientConnection | None = None
        self.session: AdmittedSession | None = None  # from the first handshake on
        self.context_id: uuid.UUID | None = None  # the conversation turns continue
        self.response: Response | None = None
        self.response_task: asyncio.Task[None] | None = None
        self.answered: deque[str] = deque(maxlen=256)  # requestIds already answered
        self.response_states: dict[str, str] = {}  # responseId -> the platform's final state
        self.last_state_seq = -1
        self.listener: Listener | None = None
        self.partials: PartialTranscripts | None = None
        self.reorder = Reorder()
        self.voice_request: str | None = None  # the utterance being heard (developer ASR)
        self.barge_in_after = 0.0  # seconds of speech that cut an answer short
        self.partial_seq = count()
        self.frame_seq = count()
        self.idle_prompted = False
        self.stopping = asyncio.Event()
        self.closing_reason: str | None = None  # the platform said session.closing

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self) -> str:
        """Serve one platform session; returns why it ended, raises `StartError` or
        `SessionFailed` when it could not go on."""
        config = self.config
        try:
            await report(config.agent_id, State.STARTING, last_error="")
            started = await start_session(config)
            if self.stopping.is_set():
                return "stopped"
            await report(
                config.agent_id,
                State.STARTING,
                session_id=started.session_id,
                sfu_url=started.sfu_url,
                user_token_ciphertext=crypto.encrypt(started.user_token),
            )
            return await self._serve_session(started)
        finally:
            await self._cancel_response(tell=False)
            if self.partials is not None:
                await self.partials.close()
            if self.listener is not None:
                self.listener.close()

    async def stop(self) -> None:
        """End the session: the answer in progress is cancelled, `session.stop` is sent and
        the socket closed; `run()` then returns."""
        self.stopping.set()
        await self._close_session()

    async def _close_session(self) -> None:
        await self._cancel_response()
        ws = self.ws
        if ws is None:
            return
        try:
            await ws.send(event("session.stop"))
            await ws.close()
        except ConnectionClosed:
            pass

    async def _serve_session(self, started: Started) -> str:
        failures = 0
        while True:
            code: int | None = None
            try:
                async with connect(
                    started.agent_ws_url,
                    open_timeout=settings.LIVEAVATAR_TIMEOUT_SECONDS,
                    ping_interval=settings.LIVEAVATAR_PING_SECONDS,
                    ping_timeout=settings.LIVEAVATAR_PONG_TIMEOUT_SECONDS,
                    max_size=2**20,
                ) as ws:
                    self.ws = ws
                    await self._handshake(ws, started)
                    failures = 0
                    await report(self.config.agent_id, State.RUNNING, last_error="")
                    await self._receive(ws)
                    code = ws.close_code
                    problem = f"The platform closed the agent socket ({code})."
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                problem = f"The agent socket dropped ({code})."
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                problem = f"The agent socket could not be opened: {exc}"
            finally:
                self.ws = None
                await self._cancel_response(tell=False)
            if self.stopping.is_set():
                return "stopped"
            if self.closing_reason is not None:
                return f"closed by the platform ({self.closing_reason})"
            if code is not None and 4000 <= code < 5000:
                raise SessionFailed(problem)
            failures += 1
            if failures > settings.LIVEAVATAR_RECONNECT_ATTEMPTS:
                raise SessionFailed(f"{problem} Gave up after {failures - 1} reconnections.")
            await report(self.config.agent_id, State.RECONNECTING, last_error=problem)
            delay = min(
                settings.LIVEAVATAR_RECONNECT_BASE_SECONDS * 2 ** (failures - 1),
                settings.LIVEAVATAR_RECONNECT_MAX_SECONDS,
            )
            try:
                await asyncio.wait_for(self.stopping.wait(), delay)
                return "stopped"
            except TimeoutError:
                pass

    async def _handshake(self, ws: ClientConnection, started: Started) -> None:
        """The first message must be `session.init` for the session REST started."""
        try:
            first = await asyncio.wait_for(ws.recv(), settings.LIVEAVATAR_TIMEOUT_SECONDS)
        except TimeoutError:
            raise SessionFailed("The platform sent no session.init.") from None
        message = _parse(first)
        data = (message or {}).get("data")
        if message is None or message.get("event") != "session.init" or not isinstance(data, dict):
            raise SessionFailed("The platform's first message was not session.init.")
        await self._init(data, started.session_id)

    async def _init(self, data: dict[str, Any], session_id: str) -> None:
        if data.get("sessionId") != session_id:
            # Never serve another session than the one this agent started.
            raise SessionFailed(f"session.init named another session than {session_id!r}.")
        await self._send(event("session.ready"))
        if self.session is None:
            user_id = data.get("userId")
            self.session = await sync_to_async(_admit)(
                self.config.character, session_id, user_id if isinstance(user_id, str) else None
            )
            if self.config.developer_asr:
                character = self.config.character
                self.listener = Listener(f"{CHANNEL}:{self.config.agent_id}:{session_id}")
                self.listener.use_turn_end_hook(character, session_id)
                self.partials = PartialTranscripts(character, self.listener)
                self.barge_in_after = await sync_to_async(barge_in_seconds)(character)

    async def _receive(self, ws: ClientConnection) -> None:
        async for message in ws:
            if isinstance(message, bytes):
                await self._heard(message)
                continue
            parsed = _parse(message)
            if parsed is None:
                logger.warning("Live Avatar: ignored a message that is not a JSON event")
                continue
            await self._event(parsed)

    async def _send(self, message: str | bytes) -> None:
        if self.ws is None:
            raise ConnectionClosed(None, None)
        await self.ws.send(message)

    # --- the platform's events --------------------------------------------------------------

    async def _event(self, message: dict[str, Any]) -> None:
        name = message["event"]
        raw = message.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        request_id = message.get("requestId")
        text = data.get("text")
        if name == "session.init":
            assert self.session is not None
            await self._init(data, self.session.session_id)
        elif name in ("input.text", "input.asr.final"):
            if isinstance(request_id, str) and isinstance(text, str) and text.strip():
                await self._answer_text(request_id, text)
        elif name in ("input.voice.start", "control.interrupt"):
            # The platform cleared its playback; our answer in progress is abandoned.
            await self._cancel_response()
        elif name == "session.closing":
            reason = data.get("reason")
            self.closing_reason = reason if isinstance(reason, str) else "no reason given"
            await self._close_session()
        elif name == "system.idleTrigger":
            await self._idle()
        elif name == "response.state":
            self._response_state(message, data)
        elif name == "error":
            logger.warning(
                "Live Avatar platform error %s: %s",
                str(data.get("code"))[:60],
                str(data.get("message"))[:300],
            )
        # session.state, scene.*, input.asr.partial, input.voice.finish and unknown events
        # need nothing from the agent.

    def _response_state(self, message: dict[str, Any], data: dict[str, Any]) -> None:
        """The first REJECTED or FINISHED of a response is its outcome; repeats (seq not
        above the last one seen) are dropped."""
        seq = message.get("seq")
        if isinstance(seq, int):
            if seq <= self.last_state_seq:
                return
            self.last_state_seq = seq
        response_id, state = message.get("responseId"), data.get("state")
        if not isinstance(response_id, str) or state not in ("REJECTED", "FINISHED"):
            return
        if response_id not in self.response_states:
            self.response_states[response_id] = f"{state}/{data.get('reason')}"
            if state == "REJECTED":
                logger.warning("Live Avatar response %s rejected: %s", response_id, data)

    async def _answer_text(self, request_id: str, text: str) -> None:
        if request_id in self.answered:
            return  # the same request as text and as the platform's transcript
        self.answered.append(request_id)
        if (problem := text_problem(text)) is not None:
            # A NUL or a lone surrogate can be neither stored nor spoken: say so, answer not.
            await self._send(
                event(
                    "error",
                    request_id=request_id,
                    data={"code": "INVALID_REQUEST", "message": f"text {problem}"},
                )
            )
            return
        await self._respond(request_id, text=text[: settings.LIVEAVATAR_MAX_INPUT_CHARS])

    async def _idle(self) -> None:
        """The user went quiet: say the idle prompt, once until they speak again."""
        prompt = self.config.idle_prompt
        busy = self.response_task is not None and not self.response_task.done()
        if not prompt or self.idle_prompted or busy:
            return
        self.idle_prompted = True
        if not self.config.developer_tts:
            await self._send(event("system.prompt", data={"text": prompt}))
            return
        voice = OwnVoice(None, self._send, self.config.tts_rate, self._next_frame_seq)
        self.response_task = asyncio.create_task(
            self._speak(voice, announce(self.config.character, prompt))
        )

    # --- answers ----------------------------------------------------------------------------

    async def _respond(
        self, request_id: str, *, text: str = "", audio: bytes | None = None
    ) -> None:
        await self._cancel_response()
        self.idle_prompted = False
        assert self.session is not None
        response = Response(request_id=request_id, response_id=str(uuid.uuid4()))
        voice: OwnVoice | PlatformVoice = (
            OwnVoice(response, self._send, self.config.tts_rate, self._next_frame_seq)
            if self.config.developer_tts
            else PlatformVoice(response, self._send)
        )
        self.response = response
        self.response_task = asyncio.create_task(
            self._speak(voice, self._turn(response, text, audio))
        )

    async def _turn(
        self, response: Response, text: str, audio: bytes | None
    ) -> AsyncIterator[TurnEvent]:
        session = self.session
        assert session is not None
        context = await sync_to_async(session.reopen)(self.context_id)
        request = session.turn(context, text=text, audio=audio, speak=self.config.developer_tts)
        async for turn_event in run_session_turn(request):
            if isinstance(turn_event, TurnStarted):
                self.context_id = turn_event.context_id
                if audio is not None:
                    await self._send(
                        event(
                            "input.asr.final",
                            request_id=response.request_id,
                            data={"text": turn_event.recognized_text},
                        )
                    )
            elif isinstance(turn_event, TurnFailed):
                await self._send(
                    event(
                        "error",
                        request_id=response.request_id,
                        data={"code": "AGENT_FAILED", "message": turn_event.error[:300]},
                    )
                )
            elif isinstance(turn_event, TurnDropped):
                logger.info("Live Avatar request %s dropped: %s", response.request_id, text)
            yield turn_event

    async def _speak(
        self, voice: OwnVoice | PlatformVoice, events: AsyncIterator[TurnEvent]
    ) -> None:
        try:
            async for turn_event in events:
                if isinstance(turn_event, TurnChunk):
                    await voice.say(turn_event)
            await voice.finish()
        except ConnectionClosed:
            pass  # the socket dropped: the reconnection starts afresh
        except Exception:
            logger.exception("Live Avatar answer failed")

    async def _cancel_response(self, *, tell: bool = True) -> None:
        """Abandon the answer in progress: the pipeline records the turn as interrupted, and
        the platform gets `response.cancel` for a response it has heard of (`tell`)."""
        task, response = self.response_task, self.response
        self.response_task = self.response = None
        if task is None or task.done():
            return
        if self.session is not None:
            await interrupt_session(self.session.key)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if tell and response is not None and response.opened and not response.closed:
            response.closed = True
            with contextlib.suppress(ConnectionClosed):
                await self._send(event("response.cancel", response_id=response.response_id))

    def _next_frame_seq(self) -> int:
        return next(self.frame_seq)

    # --- developer ASR ----------------------------------------------------------------------

    async def _heard(self, data: bytes) -> None:
        """The user's audio (developer ASR): utterances the VAD closes become requests."""
        if self.listener is None:
            return
        try:
            frame = AudioFrame.unpack(data)
        except FrameError as exc:
            logger.info("Live Avatar: ignored a binary frame: %s", exc)
            return
        if frame.codec != PCM or frame.stereo:
            logger.info("Live Avatar: ignored a frame that is not mono PCM")
            return
        for ordered in self.reorder.push(frame):
            pcm = ordered.payload[: len(ordered.payload) // 2 * 2]
            if ordered.sample_rate != settings.SPEECH_SAMPLE_RATE:
                pcm = resample_pcm(pcm, ordered.sample_rate, settings.SPEECH_SAMPLE_RATE)
            await self._hear(pcm)

    async def _hear(self, pcm: bytes) -> None:
        assert self.listener is not None and self.partials is not None
        heard = await self.listener.hear(pcm)
        if self.listener.barges_in(heard, self.barge_in_after):
            # The user has been speaking for a moment (not a cough, not echo): what the
            # character was saying is abandoned, and the platform hears the voice begin.
            await self._voice_starts()
        if (current := self.voice_request) is not None and not heard.utterances:
            session_id = self.session.session_id if self.session else ""
            self.partials.update(session_id, lambda text: self._partial(current, text))
        for utterance in heard.utterances:
            # An utterance shorter than the barge-in time begins as it ends.
            request_id = self.voice_request or await self._voice_starts()
            self.voice_request = None
            await self.partials.finish()
            self.answered.append(request_id)
            await self._send(event("input.voice.finish", request_id=request_id))
            await self._respond(request_id, audio=utterance.pcm)

    async def _voice_starts(self) -> str:
        """A new utterance: its requestId, minted here, after `input.voice.start`."""
        await self._cancel_response()
        request_id = self.voice_request = f"voice-{uuid.uuid4()}"
        self.partial_seq = count()
        await self._send(event("input.voice.start", request_id=request_id))
        return request_id

    async def _partial(self, request_id: str, text: str) -> None:
        if request_id != self.voice_request:
            return  # the utterance was finished meanwhile
        await self._send(
            event(
                "input.asr.partial",
                request_id=request_id,
                seq=next(self.partial_seq),
                data={"text": text, "final": False},
            )
        )


def _parse(message: str | bytes) -> dict[str, Any] | None:
    if isinstance(message, bytes):
        return None
    try:
        parsed = json.loads(message)
    except ValueError:
        return None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("event"), str):
        return None
    return parsed


def _admit(character: Character, session_id: str, user_id: str | None) -> AdmittedSession:
    """The platform's user in this session, as an end user of the agent's tenant."""
    caller = Caller(tenant_id=character.tenant_id, character_ids=frozenset({character.pk}))
    return admit_session(caller, character, channel=CHANNEL, user_id=user_id, session_id=session_id)
