"""Voice activity detection: cut a stream of PCM16 frames into utterances, per session.

Two detectors share one state machine (docs/turn.md#voice-activity-detection):
`SileroSpeechDetector` scores each
32 ms window with Silero VAD's ONNX model, `VolumeSpeechDetector` compares its loudest sample
with a dB threshold. Input of any length is re-chunked into exact windows, so every sample is
scored once and pre-roll is a duration, not a frame count.

Unlike AIAvatarKit, every session owns its recurrent Silero state and buffers;
nothing one session does resets another. Silero inference for all sessions goes through one
`SileroBatcher`: a session's whole backlog of windows goes to its single worker thread in one
trip, and the windows of all sessions waiting at the same moment are scored together, one
batched ONNX call per step, off the event loop. A recording that reaches `max_duration` is handed
over as a `cut` piece and goes on (the same utterance); a session's turn-end hook may hold a
pause open (docs/turn.md#semantic-end-of-turn).

Over ~400 lines on purpose: the Silero runtime and the state machine it feeds share the
session's stream state, and both are read together when the detector's timing is in question.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from .audio import pcm_to_float

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 512  # what Silero v5+ scores at 16 kHz: 32 ms
CONTEXT_SAMPLES = 64  # tail of the previous window the model sees before the new one
STATE_SHAPE = (2, 128)  # per stream; the model takes [2, batch, 128]


@dataclass(frozen=True, slots=True)
class VADConfig:
    """Defaults from AIAvatarKit (docs/turn.md#voice-activity-detection); durations in seconds."""

    speech_probability_threshold: float = 0.5
    volume_db_threshold: float | None = None  # Silero: extra amplitude gate when set
    silence_duration_threshold: float = 0.5
    max_duration: float = 10.0
    min_duration: float = 0.2
    preroll_duration: float = 0.16  # AIAvatarKit's 5 frames of 512 samples
    # A session's turn-end hook may hold a pause open this much longer (AIAvatarKit's Smart
    # Turn gate waits 1.5 s).
    turn_end_wait: float = 1.5


@dataclass(frozen=True, slots=True)
class SpeechSegment:
    """One utterance. Times are seconds since the session's first sample."""

    session_id: str
    pcm: bytes  # pre-roll + speech + trailing silence, PCM16LE mono 16 kHz
    duration: float  # voiced duration: recording minus trailing silence
    speech_start: float
    speech_end: float
    metadata: dict[str, Any] = field(default_factory=dict)
    # The recording reached max_duration while the speaker was still talking: this is one
    # piece of a longer utterance, and the next segment continues it.
    cut: bool = False


# --- Silero on ONNX Runtime -----------------------------------------------------------------


def silero_model_path() -> Path:
    """The ONNX file shipped in the `silero-vad` wheel, found without importing the package
    (its __init__ imports torch, which we never install)."""
    try:
        dist = importlib.metadata.distribution("silero-vad")
    except importlib.metadata.PackageNotFoundError as exc:
        raise RuntimeError(
            "The silero-vad package is not installed; install it with "
            "`pip install --no-deps silero-vad` (make run and make test do)."
        ) from exc
    return Path(str(dist.locate_file("silero_vad/data/silero_vad.onnx")))


@cache
def silero_session(path: str | None = None) -> onnxruntime.InferenceSession:
    """One ONNX session per process; `run` is thread-safe and holds no stream state."""
    options = onnxruntime.SessionOptions()
    # One thread per call, as upstream does: batching, not intra-op threads, is what scales.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(
        path or str(silero_model_path()), options, providers=["CPUExecutionProvider"]
    )


@dataclass(slots=True)
class SileroStream:
    """The recurrent state and context of one session's audio stream."""

    state: np.ndarray = field(default_factory=lambda: np.zeros(STATE_SHAPE, np.float32))
    context: np.ndarray = field(default_factory=lambda: np.zeros(CONTEXT_SAMPLES, np.float32))

    def reset(self) -> None:
        self.state = np.zeros(STATE_SHAPE, np.float32)
        self.context = np.zeros(CONTEXT_SAMPLES, np.float32)


def silero_infer(
    session: onnxruntime.InferenceSession, windows: np.ndarray, states: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Score a batch: windows [B, 64+512], states [2, B, 128] -> (probabilities [B], states)."""
    probabilities, new_states = session.run(
        None, {"input": windows, "state": states, "sr": np.array(SAMPLE_RATE, dtype=np.int64)}
    )
    return probabilities[:, 0], new_states


class SileroBatcher:
    """Scores windows from many streams with batched ONNX calls on one worker thread.

    A stream submits its backlog: the consecutive windows it has not scored yet. One trip to the
    worker thread scores every backlog waiting at that moment, step by step (a stream's next
    window depends on the state the one before produces): step i is one ONNX call over the i-th
    window of each stream that has one. While a trip runs, new backlogs queue up for the next.
    `max_batch=1` gives the unbatched behaviour, for comparison in the benchmark.
    """

    def __init__(self, *, model_path: str | None = None, max_batch: int = 256) -> None:
        self._session = silero_session(model_path)
        self._max_batch = max_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="silero")
        self._pending: list[tuple[SileroStream, np.ndarray, asyncio.Future[np.ndarray]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self.trips = 0  # round trips to the worker thread, for tests and the benchmark
        self.batches = 0  # ONNX calls made
        self.windows = 0

    async def score(self, stream: SileroStream, windows: np.ndarray) -> np.ndarray:
        """Speech probabilities of a stream's consecutive windows ([N, 512] floats), in order;
        the stream's state and context move past the last one."""
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append((stream, windows, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            backlogs = [(stream.context, stream.state, windows) for stream, windows, _ in batch]
            try:
                results = await loop.run_in_executor(self._executor, self._run, backlogs)
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.trips += 1
            self.batches += max(len(windows) for _, windows, _ in batch)
            self.windows += sum(len(windows) for _, windows, _ in batch)
            for (stream, windows, future), (probabilities, state) in zip(
                batch, results, strict=True
            ):
                stream.state = state
                stream.context = windows[-1, -CONTEXT_SAMPLES:]
                if not future.done():
                    future.set_result(probabilities)

    def _run(
        self, backlogs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """On the worker thread: each backlog's probabilities and final state."""
        # A window is scored with the last CONTEXT_SAMPLES of the one before it.
        inputs = [
            np.concatenate((context, windows.reshape(-1))) for context, _, windows in backlogs
        ]
        states = [state for _, state, _ in backlogs]
        probabilities = [np.empty(len(windows), np.float32) for _, _, windows in backlogs]
        for step in range(max(len(windows) for _, _, windows in backlogs)):
            active = [i for i, (_, _, windows) in enumerate(backlogs) if len(windows) > step]
            start = step * WINDOW_SAMPLES
            scored, new_states = silero_infer(
                self._session,
                np.stack(
                    [inputs[i][start : start + CONTEXT_SAMPLES + WINDOW_SAMPLES] for i in active]
                ),
                np.stack([states[i] for i in active], axis=1),
            )
            for column, i in enumerate(active):
                probabilities[i][step] = scored[column]
                states[i] = np.ascontiguousarray(new_states[:, column, :])
        return list(zip(probabilities, states, strict=True))

    def close(self) -> None:
        self._executor.shutdown(wait=True)


# --- The shared state machine ---------------------------------------------------------------


@dataclass(slots=True)
class _Session:
    preroll: deque[bytes]
    pending: bytearray = field(default_factory=bytearray)  # samples short of a full window
    samples: int = 0  # samples scored since the session began
    recording: bool = False
    buffer: list[bytes] = field(default_factory=list)
    record_duration: float = 0.0  # of the piece being recorded
    continued: bool = False  # the piece continues an utterance cut at max_duration
    silence_duration: float = 0.0
    speech_start: float = 0.0
    voiced_windows: int = 0  # windows judged voiced since the session began
    volume_db_threshold: float | None = None  # this session's own gate; None: the config's
    silero: SileroStream = field(default_factory=SileroStream)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Asked when a pause would end the utterance (its audio so far): False holds it open.
    turn_end: Callable[[bytes], Awaitable[bool]] | None = None
    held_open: bool = False  # the hook said this pause does not end the turn
    # Verdicts of the next windows, scored ahead of them with the stream state they leave.
    verdicts: deque[bool] = field(default_factory=deque)

    def reset(self, *, clear_preroll: bool = True) -> None:
        self.verdicts.clear()  # scored from the state this restarts
        self.recording = self.continued = self.held_open = False
        self.buffer = []
        self.record_duration = self.silence_duration = 0.0
        self.silero.reset()
        if clear_preroll:
            self.preroll.clear()


class SpeechDetector:
    """The utterance state machine, over exact windows of WINDOW_SAMPLES samples.

    `process(session_id, pcm)` returns the utterances the frames completed.
    """

    def __init__(self, config: VADConfig | None = None) -> None:
        self.config = config or VADConfig()
        self.window_seconds = WINDOW_SAMPLES / SAMPLE_RATE
        self._preroll_windows = math.ceil(
            round(self.config.preroll_duration / self.window_seconds, 6)
        )
        self._sessions: dict[str, _Session] = {}

    async def voiced(self, session: _Session, windows: list[bytes]) -> list[bool]:
        """Whether each of the session's next windows is speech, in order."""
        raise NotImplementedError

    def _session(self, session_id: str) -> _Session:
        session = self._sessions.get(session_id)
        if session is None:
            session = _Session(preroll=deque(maxlen=self._preroll_windows or 1))
            self._sessions[session_id] = session
        return session

    def set_volume_threshold(self, session_id: str, db: float | None) -> None:
        """A per-session amplitude gate (a client's `volume_db_threshold`); None: the default."""
        self._session(session_id).volume_db_threshold = db

    def set_turn_end(
        self, session_id: str, decide: Callable[[bytes], Awaitable[bool]] | None
    ) -> None:
        """A per-session semantic end-of-turn check (conversations/speech/turn_end.py)."""
        self._session(session_id).turn_end = decide

    def voiced_windows(self, session_id: str) -> int:
        session = self._sessions.get(session_id)
        return session.voiced_windows if session else 0

    def recording(self, session_id: str) -> bytes:
        """The utterance heard so far (for partial transcripts); b"" when nobody speaks."""
        session = self._sessions.get(session_id)
        return b"".join(session.buffer) if session and session.recording else b""

    def speech_seconds(self, session_id: str) -> float:
        """How long the utterance being recorded has been spoken so far (trailing silence
        not counted); 0.0 when nobody speaks."""
        session = self._sessions.get(session_id)
        if not session or not session.recording:
            return 0.0
        return max(0.0, session.record_duration - session.silence_duration)

    def is_recording(self, session_id: str) -> bool:
        session = self._sessions.get(session_id)
        return bool(session and session.recording)

    def reset_session(self, session_id: str) -> None:
        if session := self._sessions.get(session_id):
            session.reset()
            session.pending.clear()

    def finalize_session(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    async def process(
        self, session_id: str, pcm: bytes, *, ahead: bytes | memoryview = b""
    ) -> list[SpeechSegment]:
        """The utterances `pcm` completes. `ahead` is audio already queued behind it, which
        the next calls will bring: it is scored now, with this input, in the same trip to
        Silero's thread, and its verdicts wait for their windows."""
        session = self._session(session_id)
        segments: list[SpeechSegment] = []
        # Frames of one session are handled in arrival order even if calls overlap.
        async with session.lock:
            window_bytes = WINDOW_SAMPLES * 2
            session.pending += pcm
            while len(session.pending) >= window_bytes:
                if not session.verdicts:
                    # Every whole window known so far, at once. An utterance's end restarts
                    # the stream state and drops the verdicts past it (`_Session.reset`): the
                    # windows after it are scored again, so each decision is the one
                    # frame-by-frame scoring makes.
                    known = bytes(session.pending) + bytes(ahead)
                    windows = [
                        known[start : start + window_bytes]
                        for start in range(0, len(known) - window_bytes + 1, window_bytes)
                    ]
                    session.verdicts.extend(await self.voiced(session, windows))
                window = bytes(session.pending[:window_bytes])
                del session.pending[:window_bytes]
                session.samples += WINDOW_SAMPLES
                voiced = session.verdicts.popleft()
                segment = await self._window(session_id, session, window, voiced)
                if segment is not None:
                    segments.append(segment)
        return segments

    async def _window(
        self, session_id: str, session: _Session, window: bytes, voiced: bool
    ) -> SpeechSegment | None:
        config, step = self.config, self.window_seconds
        session.voiced_windows += voiced
        now = session.samples / SAMPLE_RATE  # end of this window
        if not session.recording:
            if not voiced:
                session.preroll.append(window)
                return None
            # The window that starts a recording is added once (AIAvatarKit adds it twice).
            session.recording = True
            session.buffer = [*session.preroll, window]
            session.preroll.clear()
            session.record_duration = step
            session.silence_duration = 0.0
            session.speech_start = now - step
        else:
            session.buffer.append(window)
            session.record_duration += step
            session.silence_duration = 0.0 if voiced else session.silence_duration + step
            if voiced:
                session.held_open = False  # the user goes on: the next pause is asked anew

        # A piece that continues a cut utterance may start inside a pause: never below zero.
        voiced_duration = max(0.0, session.record_duration - session.silence_duration)

        if session.record_duration >= config.max_duration - 1e-9:
            # The speaker has not paused: hand over this piece and keep recording the same
            # utterance (its stream state and silence count go on).
            piece = self._emit(session_id, session, session.record_duration, now, 0.0, cut=True)
            session.buffer = []
            session.record_duration = 0.0
            session.speech_start = now
            session.continued = True
            return piece
        if session.silence_duration >= config.silence_duration_threshold - 1e-9:
            if voiced_duration < config.min_duration - 1e-9 and not session.continued:
                session.reset(clear_preroll=False)
                return None
            if await self._held_open(session):
                return None
            silence = session.silence_duration
            segment = self._emit(session_id, session, voiced_duration, now, silence)
            session.reset()
            return segment
        return None

    async def _held_open(self, session: _Session) -> bool:
        """Whether the session's turn-end hook keeps this pause from ending the utterance;
        asked once per pause, and never past `turn_end_wait` more seconds of silence."""
        config = self.config
        if session.turn_end is None:
            return False
        limit = config.silence_duration_threshold + config.turn_end_wait
        if session.silence_duration >= limit - 1e-9:
            return False
        if not session.held_open:
            try:
                session.held_open = not await session.turn_end(b"".join(session.buffer))
            except Exception:
                logger.exception("turn-end hook failed; the pause ends the turn")
        return session.held_open

    def _emit(
        self,
        session_id: str,
        session: _Session,
        duration: float,
        now: float,
        silence: float,
        *,
        cut: bool = False,
    ) -> SpeechSegment:
        return SpeechSegment(
            session_id=session_id,
            pcm=b"".join(session.buffer),
            duration=round(duration, 6),
            speech_start=round(session.speech_start, 6),
            speech_end=round(now - silence, 6),
            metadata={
                "vad_performance": {
                    "speech_end_at": round(now - silence, 6),
                    "silence_threshold_time": round(silence, 6),
                }
            },
            cut=cut,
        )


def _peak_above(window: bytes, db: float) -> bool:
    threshold = 32767 * 10 ** (db / 20)
    return int(np.abs(np.frombuffer(window, dtype="<i2").astype(np.int32)).max()) > threshold


class VolumeSpeechDetector(SpeechDetector):
    """Voiced when the loudest sample exceeds `volume_db_threshold` (default -40 dBFS)."""

    def __init__(self, config: VADConfig | None = None) -> None:
        config = config or VADConfig()
        if config.volume_db_threshold is None:
            config = dataclasses.replace(config, volume_db_threshold=-40.0)
        super().__init__(config)

    async def voiced(self, session: _Session, windows: list[bytes]) -> list[bool]:
        db = session.volume_db_threshold or self.config.volume_db_threshold
        assert db is not None
        return [_peak_above(window, db) for window in windows]


class SileroSpeechDetector(SpeechDetector):
    """Voiced when Silero's speech probability exceeds the threshold (strictly)."""

    def __init__(self, config: VADConfig | None = None, *, batcher: SileroBatcher) -> None:
        super().__init__(config)
        self.batcher = batcher

    async def voiced(self, session: _Session, windows: list[bytes]) -> list[bool]:
        samples = pcm_to_float(b"".join(windows)).reshape(len(windows), WINDOW_SAMPLES)
        probabilities = await self.batcher.score(session.silero, samples)
        db = session.volume_db_threshold or self.config.volume_db_threshold
        threshold = self.config.speech_probability_threshold
        return [
            bool(probability > threshold) and (db is None or _peak_above(window, db))
            for probability, window in zip(probabilities, windows, strict=True)
        ]
