"""A turn's spoken sentences into face frames, at the pace a listener hears them."""

from __future__ import annotations

import asyncio
import time

from django.conf import settings

from conversations.pipeline.events import TurnChunk
from conversations.speech.audio import AudioError, read_wav, to_mono

from .animator import FPS, FaceFrame, FaceTrack
from .lipsync import mouth_engine
from .phonemes import visemes

# Frames a client may hold ahead of what it plays: enough to ride out a late sentence,
# little enough that an interrupt is heard within a quarter of a second.
LEAD_FRAMES = 8


def face_track(seed: int = 0) -> FaceTrack:
    """A new turn's track, with the engine the server is configured for."""
    return FaceTrack(mouth_engine(settings.AVATAR_ONNX_MODEL_PATH), seed=seed)


async def sentence_frames(
    track: FaceTrack, chunk: TurnChunk, audio: bytes | None = None
) -> list[FaceFrame]:
    """The frames one synthesized sentence (`audio`, else the chunk's own) completes; none
    for a silent one."""
    audio = chunk.audio if audio is None else audio
    if not audio:
        return []
    try:
        wav = to_mono(read_wav(audio))
    except AudioError:
        return []  # the synthesizer already refuses non-WAV audio; nothing to animate
    shapes = await visemes(chunk.voice_text or "", chunk.language)
    face = chunk.avatar_control.face_name
    seconds = chunk.avatar_control.face_duration
    # numpy work off the event loop: other sessions' frames keep their clock.
    return await asyncio.to_thread(track.add, wav.pcm, wav.sample_rate, shapes, face, seconds)


async def chunk_face(chunk: TurnChunk, audio: bytes) -> list[list[float]]:
    """One sentence's face on its own clock, for protocols that send audio by sentence: frame
    i covers [i/30 s, (i+1)/30 s) of `audio`, weights rounded to 3 decimals."""
    track = face_track()
    frames = await sentence_frames(track, chunk, audio) + track.finish()
    return [[round(float(w), 3) for w in frame.weights] for frame in frames]


class FramePacer:
    """A token bucket over the frame clock: the first LEAD_FRAMES go at once, then one frame
    per 1/30 s from the turn's first frame, and a late producer never causes a catch-up burst
    beyond the lead."""

    def __init__(self, lead: int = LEAD_FRAMES, fps: int = FPS) -> None:
        self.lead = lead
        self.fps = fps
        self.tokens = float(lead)
        self.last = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        if self.last:
            self.tokens = min(self.lead, self.tokens + (now - self.last) * self.fps)
        self.last = now
        if self.tokens < 1.0:
            await asyncio.sleep((1.0 - self.tokens) / self.fps)
            self.tokens = 1.0
            self.last = time.monotonic()
        self.tokens -= 1.0
