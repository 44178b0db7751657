"""What the agent sends while a character answers: text for the platform's voice, or the
character's own voice as audio frames (docs/avatar.md#the-live-avatar-agent).

Either way a response that has begun ends with exactly one closing event: `response.done` (or
`response.audio.finish`) here when the answer is complete, `response.cancel` from the session
when it is abandoned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from itertools import count
from typing import Any

from conversations.avatar.speaking import FramePacer
from conversations.pipeline.events import TurnChunk
from conversations.speech.audio import AudioError, read_wav, resample_pcm, to_mono

from .protocol import MOODS, AudioFrame, event

Send = Callable[[str | bytes], Awaitable[None]]

FRAME_MS = 40
# Audio may run this far ahead of real time (the platform's buffer): 12 frames = 480 ms.
AHEAD_FRAMES = 12


@dataclass(slots=True)
class Response:
    """One answer to one request: its ids, and whether the platform has heard of it yet."""

    request_id: str
    response_id: str
    opened: bool = False  # something of it was sent, so it must be closed
    closed: bool = False

    def event(self, name: str, **fields: Any) -> str:
        """An event of this response: both ids, and `fields`."""
        return event(name, request_id=self.request_id, response_id=self.response_id, **fields)


class PlatformVoice:
    """Platform TTS: `response.start` with the mood of the first sentence's face tag, then one
    `response.chunk` per sentence (seq 0, 1, 2...), then `response.done`."""

    def __init__(self, response: Response, send: Send) -> None:
        self.response = response
        self.send = send
        self.seq = count()

    async def say(self, chunk: TurnChunk) -> None:
        if not chunk.voice_text:
            return
        if not self.response.opened:
            self.response.opened = True
            config: dict[str, float | str] = {"speed": chunk.speed or 1.0, "volume": 1.0}
            if (mood := MOODS.get(chunk.avatar_control.face_name or "")) is not None:
                config["mood"] = mood
            await self.send(self.response.event("response.start", data={"audioConfig": config}))
        await self.send(
            self.response.event(
                "response.chunk", seq=next(self.seq), stamped=True, data={"text": chunk.voice_text}
            )
        )

    async def finish(self) -> None:
        if self.response.opened and not self.response.closed:
            self.response.closed = True
            await self.send(self.response.event("response.done"))


class OwnVoice:
    """Developer TTS: each sentence's WAV resampled to the avatar's rate and sent as 40 ms PCM
    frames between `response.audio.start` and `.finish` (or an idle prompt's `promptStart` and
    `promptFinish`). The frames join the sentences without a gap; only the last one may be
    shorter. Their timestamps are media time from the turn's start, the first is a key frame,
    and a token bucket keeps them at most AHEAD_FRAMES ahead of real time."""

    def __init__(
        self,
        response: Response | None,
        send: Send,
        rate: int,
        sequence: Callable[[], int],
    ) -> None:
        self.response = response  # None: an idle prompt
        self.send = send
        self.rate = rate
        self.sequence = sequence  # the session's frame counter: frames number on across turns
        self.frame_bytes = rate * FRAME_MS // 1000 * 2
        self.pending = b""
        self.samples_sent = 0
        self.started = False
        self.pacer = FramePacer(lead=AHEAD_FRAMES, fps=1000 // FRAME_MS)

    async def say(self, chunk: TurnChunk) -> None:
        if not chunk.audio:
            return
        try:
            wav = to_mono(read_wav(chunk.audio))
        except AudioError:
            return  # the synthesizer already refuses non-WAV audio
        self.pending += resample_pcm(wav.pcm, wav.sample_rate, self.rate)
        while len(self.pending) >= self.frame_bytes:
            frame, self.pending = self.pending[: self.frame_bytes], self.pending[self.frame_bytes :]
            await self._frame(frame)

    async def finish(self) -> None:
        if self.pending:
            await self._frame(self.pending)
            self.pending = b""
        if self.started and (self.response is None or not self.response.closed):
            if self.response is None:
                await self.send(event("response.audio.promptFinish"))
                return
            self.response.closed = True
            await self.send(self.response.event("response.audio.finish"))

    async def _frame(self, pcm: bytes) -> None:
        if not self.started:
            self.started = True
            if self.response is None:
                await self.send(event("response.audio.promptStart"))
            else:
                self.response.opened = True
                await self.send(self.response.event("response.audio.start"))
        await self.pacer.wait()
        frame = AudioFrame(
            seq=self.sequence(),
            timestamp=self.samples_sent * 1000 // self.rate,
            sample_rate=self.rate,
            samples=len(pcm) // 2,
            payload=pcm,
            key=self.samples_sent == 0,
        )
        self.samples_sent += len(pcm) // 2
        await self.send(frame.pack())
