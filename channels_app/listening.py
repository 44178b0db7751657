"""Listening on the realtime socket: server-side VAD per session, utterances that become
turns, barge-in, and partial transcripts of what is being said (docs/turn.md#turn-taking).

One speech detector per process (per event loop) serves every live session. Each session is a
key in it with its own Silero state, buffers and volume gate; the windows of all sessions are
scored together in batched ONNX calls on one worker thread (`SileroBatcher`), so the event loop
never runs the model and a hundred sessions cost a few calls, not a hundred.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from django.conf import settings

from characters.models import Character
from conversations.speech.stt import SpeechRecognizer, STTError
from conversations.speech.turn_end import turn_end_hook
from conversations.speech.vad import (
    SileroBatcher,
    SileroSpeechDetector,
    SpeechDetector,
    SpeechSegment,
    VADConfig,
    VolumeSpeechDetector,
)
from conversations.speech.voices import recognizer_for, voice_settings

logger = logging.getLogger(__name__)

_detectors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SpeechDetector] = (
    weakref.WeakKeyDictionary()
)


def _build_detector() -> SpeechDetector:
    config = VADConfig(
        volume_db_threshold=settings.REALTIME_VAD_VOLUME_DB,
        silence_duration_threshold=settings.REALTIME_VAD_SILENCE_SECONDS,
        max_duration=settings.REALTIME_VAD_MAX_SECONDS,
        turn_end_wait=settings.REALTIME_TURN_END_WAIT_SECONDS,
    )
    if settings.REALTIME_VAD == "volume":
        return VolumeSpeechDetector(config)
    return SileroSpeechDetector(config, batcher=SileroBatcher())


def speech_detector() -> SpeechDetector:
    """This event loop's detector (one per server process), built on first use."""
    loop = asyncio.get_running_loop()
    detector = _detectors.get(loop)
    if detector is None:
        detector = _detectors[loop] = _build_detector()
    return detector


def barge_in_seconds(character: Character) -> float:
    """Seconds of speech that stop the character's reply: its own setting, else the server's."""
    seconds = voice_settings(character).barge_in_seconds
    return float(settings.REALTIME_BARGE_IN_SECONDS if seconds is None else seconds)


@dataclass(frozen=True, slots=True)
class Heard:
    utterances: list[SpeechSegment]  # utterances these frames completed
    voiced: bool  # some window of these frames was speech
    speaking: float  # seconds the utterance still being spoken has lasted (0.0: none)


def joined(pieces: list[SpeechSegment]) -> SpeechSegment:
    """One utterance from the pieces the detector cut it into at its maximum duration."""
    if len(pieces) == 1:
        return pieces[0]
    first, last = pieces[0], pieces[-1]
    return dataclasses.replace(
        last,
        pcm=b"".join(piece.pcm for piece in pieces),
        duration=round(sum(piece.duration for piece in pieces), 6),
        speech_start=first.speech_start,
    )


class Listener:
    """One live session's ears. `key` must be unique per connection (two sockets may carry
    the same session id), so cleanup of one never resets the other.

    Speech that goes on past the detector's maximum duration is not cut into two turns: the
    pieces are held and joined, so the whole utterance becomes one request, up to
    REALTIME_UTTERANCE_MAX_SECONDS (past that the pieces held so far go out as one turn)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.detector = speech_detector()
        self.held: list[SpeechSegment] = []  # pieces of an utterance still going on
        self.barged_in = False  # the utterance being spoken has already stopped a reply

    async def hear(self, pcm: bytes, *, ahead: bytes | memoryview = b"") -> Heard:
        """What these frames completed; `ahead` is the audio queued behind them, scored with
        them in one trip to the VAD (`SpeechDetector.process`)."""
        before = self.detector.voiced_windows(self.key)
        utterances = []
        for piece in await self.detector.process(self.key, pcm, ahead=ahead):
            self.held.append(piece)
            held = sum(p.duration for p in self.held)
            if not piece.cut or held >= settings.REALTIME_UTTERANCE_MAX_SECONDS - 1e-6:
                utterances.append(joined(self.held))
                self.held = []
        speaking = self.detector.speech_seconds(self.key)
        if self.held:
            speaking += sum(piece.duration for piece in self.held)
        if utterances or not speaking:
            self.barged_in = False
        voiced = self.detector.voiced_windows(self.key) > before
        return Heard(utterances, voiced, speaking)

    def barges_in(self, heard: Heard, after: float) -> bool:
        """True once per utterance, when it has been spoken for `after` seconds: the moment
        it stops the character's reply (the caller knows whether one is playing)."""
        if self.barged_in or heard.speaking <= 0.0 or heard.speaking < after - 1e-6:
            return False
        self.barged_in = True
        return True

    def heard_so_far(self) -> bytes:
        """The utterance being spoken, from its first piece on; b"" when nobody speaks."""
        current = self.detector.recording(self.key)
        return b"".join(piece.pcm for piece in self.held) + current if self.held else current

    def set_volume_threshold(self, db: float | None) -> None:
        self.detector.set_volume_threshold(self.key, db)

    def use_turn_end_hook(self, character: Character, session_id: str) -> None:
        """The character's turn-end hook, if any, decides whether a pause ends the utterance
        (it hears the utterance from its first piece)."""
        path = voice_settings(character).turn_end_hook
        decide = None
        if path:
            try:
                decide = turn_end_hook(path)
            except ValueError as exc:  # checked when saved; its module may have gone since
                logger.warning("turn-end hook refused, pauses end turns: %s", exc)
        if decide is None:
            self.detector.set_turn_end(self.key, None)
            return
        hook = decide

        async def pause_ends_turn(pcm: bytes) -> bool:
            return await hook(session_id, b"".join(piece.pcm for piece in self.held) + pcm)

        self.detector.set_turn_end(self.key, pause_ends_turn)

    def forget_speech(self) -> None:
        """Drop what is being recorded (and the pre-roll): with barge-in off, speech that
        overlaps the reply must not become the next turn."""
        self.detector.reset_session(self.key)
        self.held = []

    def close(self) -> None:
        self.detector.finalize_session(self.key)


class PartialTranscripts:
    """What the user has said so far (the client's `send_partial_text`): the utterance being
    recorded is transcribed every REALTIME_PARTIAL_INTERVAL_SECONDS of new audio, one request
    at a time. A transcript still being made when its utterance ends is dropped (`finish`),
    so no partial text arrives for an utterance already accepted."""

    def __init__(self, character: Character, listener: Listener) -> None:
        self.character = character
        self.listener = listener
        self.recognizer: SpeechRecognizer | None = None
        self.task: asyncio.Task[None] | None = None
        self.heard = 0  # bytes of the current utterance already transcribed

    async def finish(self) -> None:
        """The utterance ended: cancel its transcript in flight; the next one starts afresh."""
        await self.close()
        self.heard = 0

    def update(self, session_id: str, say: Callable[[str], Awaitable[None]]) -> None:
        """Transcribe the utterance so far when enough is new and no request is running;
        `say` gets the text."""
        pcm = self.listener.heard_so_far()
        step = int(settings.REALTIME_PARTIAL_INTERVAL_SECONDS * settings.SPEECH_SAMPLE_RATE * 2)
        if len(pcm) - self.heard < step:
            return
        if self.task is not None and not self.task.done():
            return
        self.heard = len(pcm)
        self.task = asyncio.create_task(self._transcribe(session_id, pcm, say))

    async def _transcribe(
        self, session_id: str, pcm: bytes, say: Callable[[str], Awaitable[None]]
    ) -> None:
        try:
            if self.recognizer is None:
                self.recognizer = recognizer_for(self.character)
            if self.recognizer is None:
                return
            transcript = await self.recognizer.recognize(session_id, pcm)
        except STTError as exc:
            logger.info("partial transcript failed: %s", exc)
            return
        if transcript.text:
            await say(transcript.text)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
