"""One turn's face: speech cut into frames on a fixed clock, each with its 52 weights.

Frame i covers samples [round(i*rate/fps), round((i+1)*rate/fps)) of the turn's speech, so the
clock never drifts even when the rate is not a multiple of the fps; sentences join without a
gap, and only the turn's last frame is padded with silence. Concatenated, the frames' audio is
the synthesized speech followed by less than one frame of zeros.

On top of the mouth: the expression of the sentence's face tag (eased in and out), blinks
every 2-6 s and a slow idle drift of brows and gaze. None of these touch the jaw, so a silent
frame keeps a closed mouth.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np

from conversations.speech.audio import resample_pcm

from . import arkit
from .lipsync import GATE_DB, MouthEngine

FPS = 30
SAMPLE_RATE = 24000
VOICED_WINDOW_SECONDS = 0.01
EXPRESSION_EASE_FRAMES = 6
BLINK = (0.35, 0.8, 1.0, 1.0, 0.75, 0.4, 0.15)
_BLINK_NAMES = [arkit.INDEX["eyeBlinkLeft"], arkit.INDEX["eyeBlinkRight"]]


@dataclass(slots=True)
class FaceFrame:
    index: int  # from 0 in each turn
    pcm: bytes  # PCM16 mono at the track's rate
    weights: np.ndarray  # 52 floats in arkit.NAMES order
    viseme: str | None

    def weights_object(self) -> dict[str, float]:
        return {name: round(float(v), 4) for name, v in zip(arkit.NAMES, self.weights, strict=True)}

    def pts_ms(self, fps: int = FPS) -> float:
        return self.index * 1000 / fps


@dataclass(slots=True)
class _Expression:
    start: int  # frame index
    end: int
    shape: np.ndarray


@dataclass(slots=True)
class FaceTrack:
    """Feed it each sentence's speech as it is synthesized; take the frames it completes."""

    engine: MouthEngine
    sample_rate: int = SAMPLE_RATE
    fps: int = FPS
    seed: int = 0
    frames_out: int = 0
    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))
    _pending_start: int = 0  # turn sample index of _pending[0]
    _visemes: list[tuple[int, int, list[str | None]]] = field(default_factory=list)
    _expressions: list[_Expression] = field(default_factory=list)
    _next_blink: int = -1
    _rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._next_blink = self._blink_gap()

    @property
    def samples_in(self) -> int:
        return self._pending_start + len(self._pending)

    def _bound(self, frame: int) -> int:
        return round(frame * self.sample_rate / self.fps)

    def add(
        self,
        pcm: bytes,
        rate: int,
        visemes: list[str] | None = None,
        face: str | None = None,
        face_seconds: float | None = None,
    ) -> list[FaceFrame]:
        """Append one sentence of speech (PCM16 mono at `rate`) with its viseme sequence and
        face tag; returns the frames now complete."""
        if rate != self.sample_rate:
            pcm = resample_pcm(pcm, rate, self.sample_rate)
        samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.int16)
        start = self.samples_in
        if visemes:
            self._visemes.append(
                (start, self.sample_rate, _spread(samples, visemes, self.sample_rate))
            )
        if face and (shape := arkit.EXPRESSIONS.get(face.lower())) is not None:
            seconds = max(face_seconds or 0.0, len(samples) / self.sample_rate)
            first = start * self.fps // self.sample_rate
            self._expressions.append(
                _Expression(first, first + math.ceil(seconds * self.fps), shape)
            )
        self._pending = np.concatenate([self._pending, samples])
        return self._emit(final=False)

    def finish(self) -> list[FaceFrame]:
        """The rest of the turn: a last frame padded with silence if speech remains."""
        return self._emit(final=True)

    def _emit(self, *, final: bool) -> list[FaceFrame]:
        bounds: list[tuple[int, int]] = []
        index = self.frames_out
        while True:
            lo, hi = self._bound(index), self._bound(index + 1)
            if hi > self.samples_in and not (final and lo < self.samples_in):
                break
            bounds.append((lo, hi))
            index += 1
        if not bounds:
            return []
        end = bounds[-1][1]
        if end > self.samples_in:
            self._pending = np.concatenate(
                [self._pending, np.zeros(end - self.samples_in, np.int16)]
            )
        chunks = [
            self._pending[lo - self._pending_start : hi - self._pending_start] for lo, hi in bounds
        ]
        width = max(len(c) for c in chunks)
        block = np.zeros((len(chunks), width), dtype=np.float32)
        for row, chunk in enumerate(chunks):
            block[row, : len(chunk)] = chunk / 32768.0
        visemes = [self._viseme_at((lo + hi) // 2) for lo, hi in bounds]
        weights = self.engine.shapes(block, self.sample_rate, visemes)
        frames = []
        for row, chunk in enumerate(chunks):
            number = self.frames_out + row
            face = (
                weights[row]
                + self._expression(number)
                + self._blink(number)
                + _idle(number, self.fps)
            )
            frames.append(
                FaceFrame(
                    number, chunk.astype("<i2").tobytes(), np.clip(face, 0.0, 1.0), visemes[row]
                )
            )
        self.frames_out += len(frames)
        cut = end - self._pending_start
        self._pending, self._pending_start = self._pending[cut:], end
        self._visemes = [v for v in self._visemes if v[0] + len(v[2]) * _window(v[1]) > end]
        return frames

    def _viseme_at(self, sample: int) -> str | None:
        for start, rate, windows in self._visemes:
            slot = (sample - start) // _window(rate)
            if 0 <= slot < len(windows):
                return windows[slot]
        return None

    def _expression(self, frame: int) -> np.ndarray:
        total = np.zeros(arkit.COUNT, dtype=np.float32)
        for e in self._expressions:
            if e.start <= frame < e.end:
                ease = min(
                    1.0,
                    (frame - e.start + 1) / EXPRESSION_EASE_FRAMES,
                    (e.end - frame) / EXPRESSION_EASE_FRAMES,
                )
                total = np.maximum(total, ease * e.shape)
        return total

    def _blink_gap(self) -> int:
        return round(self._rng.uniform(2.0, 6.0) * self.fps)

    def _blink(self, frame: int) -> np.ndarray:
        out = np.zeros(arkit.COUNT, dtype=np.float32)
        phase = frame - self._next_blink
        if 0 <= phase < len(BLINK):
            out[_BLINK_NAMES] = BLINK[phase]
        elif phase >= len(BLINK):
            self._next_blink = frame + self._blink_gap()
        return out


def _window(rate: int) -> int:
    return max(1, round(rate * VOICED_WINDOW_SECONDS))


def _spread(samples: np.ndarray, visemes: list[str], rate: int) -> list[str | None]:
    """One viseme per 10 ms window of the sentence: the sequence spread evenly over the
    windows that hold speech; silent windows get None."""
    size = _window(rate)
    count = len(samples) // size
    if not count:
        return []
    windows = samples[: count * size].reshape(count, size).astype(np.float64) / 32768.0
    db = 20 * np.log10(np.sqrt(np.mean(windows**2, axis=1)) + 1e-9)
    voiced = np.flatnonzero(db > GATE_DB + 10)
    out: list[str | None] = [None] * count
    for k, slot in enumerate(voiced):
        out[slot] = visemes[k * len(visemes) // len(voiced)]
    return out


_IDLE_BROW = arkit.INDEX["browInnerUp"]
_IDLE_UP = [arkit.INDEX["eyeLookUpLeft"], arkit.INDEX["eyeLookUpRight"]]
_IDLE_DOWN = [arkit.INDEX["eyeLookDownLeft"], arkit.INDEX["eyeLookDownRight"]]


def _idle(frame: int, fps: int) -> np.ndarray:
    """A small, slow drift of brows and gaze (periods 4.1 s and 7.3 s, never above 0.08)."""
    t = frame / fps
    out = np.zeros(arkit.COUNT, dtype=np.float32)
    out[_IDLE_BROW] = 0.04 + 0.03 * math.sin(2 * math.pi * t / 4.1)
    gaze = 0.05 * math.sin(2 * math.pi * t / 7.3)
    out[_IDLE_UP] = max(gaze, 0.0)
    out[_IDLE_DOWN] = max(-gaze, 0.0)
    return out
