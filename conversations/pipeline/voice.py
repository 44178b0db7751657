"""Listening for realtime sessions: server-side VAD per session, and utterances into turns.

One speech detector per process (per event loop) serves every live session. Each session is a
key in it with its own Silero state, buffers and volume gate; the windows of all sessions are
scored together in batched ONNX calls on one worker thread (`SileroBatcher`), so the event loop
never runs the model and a hundred sessions cost a few calls, not a hundred.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass

from django.conf import settings

from conversations.speech.vad import (
    SileroBatcher,
    SileroSpeechDetector,
    SpeechDetector,
    SpeechSegment,
    VADConfig,
    VolumeSpeechDetector,
)

_detectors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SpeechDetector] = (
    weakref.WeakKeyDictionary()
)


def _build_detector() -> SpeechDetector:
    config = VADConfig(
        volume_db_threshold=settings.REALTIME_VAD_VOLUME_DB,
        silence_duration_threshold=settings.REALTIME_VAD_SILENCE_SECONDS,
        max_duration=settings.REALTIME_VAD_MAX_SECONDS,
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


@dataclass(frozen=True, slots=True)
class Heard:
    utterances: list[SpeechSegment]  # utterances these frames completed
    voiced: bool  # some window of these frames was speech


class Listener:
    """One live session's ears. `key` must be unique per connection (two sockets may carry
    the same session id), so cleanup of one never resets the other."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.detector = speech_detector()

    async def hear(self, pcm: bytes) -> Heard:
        before = self.detector.voiced_windows(self.key)
        utterances = await self.detector.process(self.key, pcm)
        return Heard(utterances, self.detector.voiced_windows(self.key) > before)

    def heard_so_far(self) -> bytes:
        return self.detector.recording(self.key)

    def set_volume_threshold(self, db: float | None) -> None:
        self.detector.set_volume_threshold(self.key, db)

    def forget_speech(self) -> None:
        """Drop what is being recorded (and the pre-roll): with barge-in off, speech that
        overlaps the reply must not become the next turn."""
        self.detector.reset_session(self.key)

    def close(self) -> None:
        self.detector.finalize_session(self.key)
