"""Voice activity detection on real speech (espeak-ng) with Silero on ONNX Runtime, and the
volume detector on synthetic tones where exact sample positions can be checked."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from conversations.speech.vad import (
    WINDOW_SAMPLES,
    SileroBatcher,
    SileroSpeechDetector,
    SpeechDetector,
    SpeechSegment,
    VADConfig,
    VolumeSpeechDetector,
)
from tests.processes import BASE_DIR
from tests.speech.audio import RATE, chunks, silence, tone, utterance

CHUNK = 0.1  # seconds of audio per process() call, as a client would stream it
WINDOW = WINDOW_SAMPLES / RATE


@pytest.fixture
def batcher() -> Iterator[SileroBatcher]:
    batcher = SileroBatcher()
    yield batcher
    batcher.close()


async def feed(detector: SpeechDetector, session: str, pcm: bytes) -> list[SpeechSegment]:
    found: list[SpeechSegment] = []
    for piece in chunks(pcm, CHUNK):
        found += await detector.process(session, piece)
    return found


async def test_it_finds_one_segment_with_the_right_boundaries(batcher: SileroBatcher) -> None:
    spoken = utterance(before=0.5, after=1.0)
    detector = SileroSpeechDetector(batcher=batcher)

    segments = await feed(detector, "s1", spoken.pcm)

    assert len(segments) == 1
    segment = segments[0]
    assert segment.speech_start == pytest.approx(spoken.start, abs=CHUNK)
    assert segment.speech_end == pytest.approx(spoken.end, abs=CHUNK)
    assert segment.duration == pytest.approx(spoken.end - spoken.start, abs=2 * CHUNK)
    # Pre-roll, the speech, then the silence that ended it.
    config = detector.config
    expected = (
        config.preroll_duration
        + segment.speech_end
        - segment.speech_start
        + config.silence_duration_threshold
    )
    assert len(segment.pcm) / 2 / RATE == pytest.approx(expected, abs=2 * WINDOW)
    assert segment.metadata["vad_performance"]["silence_threshold_time"] == pytest.approx(
        config.silence_duration_threshold, abs=WINDOW
    )


async def test_it_adds_the_window_that_starts_a_recording_only_once() -> None:
    # Distinct quiet noise before the tone, so any repeated window would show.
    rng = np.random.default_rng(7)
    noise = rng.integers(-50, 50, size=RATE, dtype=np.int16).tobytes()
    stream = noise + tone(0.5) + silence(0.6)
    detector = VolumeSpeechDetector()

    [segment] = await feed(detector, "s1", stream)

    window_bytes = 2 * WINDOW_SAMPLES
    first = (len(noise) // window_bytes) * window_bytes  # the tone starts on a window edge
    preroll = round(detector.config.preroll_duration / WINDOW) * window_bytes
    assert segment.pcm == stream[first - preroll : first - preroll + len(segment.pcm)]
    assert segment.speech_start == pytest.approx(1.0, abs=WINDOW)


async def test_it_keeps_each_sessions_state_apart(batcher: SileroBatcher) -> None:
    first = utterance("What is the capital of France?", before=0.3, after=0.8)
    second = utterance("Tell me a story about a dragon.", before=1.1, after=0.9)

    alone_a = await feed(SileroSpeechDetector(batcher=batcher), "a", first.pcm)
    alone_b = await feed(SileroSpeechDetector(batcher=batcher), "b", second.pcm)
    detector = SileroSpeechDetector(batcher=batcher)
    batches_before = batcher.batches
    together = await asyncio.gather(feed(detector, "a", first.pcm), feed(detector, "b", second.pcm))

    assert together == [alone_a, alone_b]
    assert len(alone_a) == len(alone_b) == 1
    windows = (len(first.pcm) + len(second.pcm)) // (2 * WINDOW_SAMPLES)
    assert batcher.batches - batches_before < windows  # the two streams shared ONNX calls


async def test_it_scores_concurrent_sessions_in_batches(batcher: SileroBatcher) -> None:
    spoken = utterance()
    detector = SileroSpeechDetector(batcher=batcher)

    results = await asyncio.gather(*(feed(detector, f"s{n}", spoken.pcm) for n in range(8)))

    assert all(len(segments) == 1 for segments in results)
    assert batcher.windows / batcher.batches > 4


async def test_a_queued_burst_is_scored_in_few_trips_with_the_frame_by_frame_decisions(
    batcher: SileroBatcher,
) -> None:
    # Two utterances: the first one's end restarts the stream state in the middle of the burst.
    first = utterance("What is the capital of France?", before=0.4, after=0.8)
    second = utterance("Tell me a story about a dragon.", before=0.3, after=0.9)
    stream = first.pcm + second.pcm
    frame = 2 * WINDOW_SAMPLES  # one 32 ms frame, as a microphone sends it
    frames = [stream[start : start + frame] for start in range(0, len(stream), frame)]

    one_by_one = SileroSpeechDetector(batcher=batcher)
    trips_before = batcher.trips
    expected: list[SpeechSegment] = []
    for piece in frames:
        expected += await one_by_one.process("s", piece)
    trips_one_by_one = batcher.trips - trips_before

    burst = SileroSpeechDetector(batcher=batcher)
    trips_before = batcher.trips
    found = await burst.process("s", b"".join(frames))  # every frame queued behind a busy loop
    trips_burst = batcher.trips - trips_before

    assert len(expected) == 2
    assert found == expected  # same starts, ends, durations and audio
    assert burst.voiced_windows("s") == one_by_one.voiced_windows("s")
    assert trips_one_by_one == len(stream) // frame  # one per whole frame
    assert trips_burst <= 3  # the burst, and the rest again after each utterance's end


async def test_it_drops_a_blip_shorter_than_the_minimum() -> None:
    detector = VolumeSpeechDetector()

    assert await feed(detector, "s1", silence(0.3) + tone(0.15) + silence(0.8)) == []
    assert not detector.is_recording("s1")


async def test_it_cuts_continuous_speech_at_the_maximum_duration() -> None:
    detector = VolumeSpeechDetector()

    segments = await feed(detector, "s1", silence(0.2) + tone(12.0))

    assert len(segments) == 1
    assert segments[0].duration == pytest.approx(10.0, abs=WINDOW)
    assert segments[0].speech_end == pytest.approx(10.2, abs=WINDOW)


async def test_the_speech_after_a_cut_continues_the_same_utterance() -> None:
    detector = VolumeSpeechDetector()

    # 10 s, then 0.1 s more (shorter than the minimum duration, yet part of the utterance).
    segments = await feed(detector, "s1", silence(0.2) + tone(10.1) + silence(0.8))

    first, rest = segments
    assert first.cut and not rest.cut
    assert rest.duration == pytest.approx(0.1, abs=WINDOW)
    assert rest.speech_start == pytest.approx(first.speech_end, abs=1e-6)
    assert not detector.is_recording("s1")


async def test_it_requires_loudness_too_when_a_volume_threshold_is_set(
    batcher: SileroBatcher,
) -> None:
    spoken = utterance()
    quiet = (np.frombuffer(spoken.pcm, dtype="<i2") // 100).astype("<i2").tobytes()
    gated = SileroSpeechDetector(VADConfig(volume_db_threshold=-30.0), batcher=batcher)

    assert await feed(gated, "s1", quiet) == []
    assert len(await feed(gated, "s2", spoken.pcm)) == 1


def test_it_never_imports_torch() -> None:
    script = (
        "import asyncio, sys\n"
        "from conversations.speech.vad import SileroBatcher, SileroSpeechDetector\n"
        "async def main():\n"
        "    detector = SileroSpeechDetector(batcher=SileroBatcher())\n"
        "    await detector.process('s', bytes(32000))\n"
        "asyncio.run(main())\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=BASE_DIR, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
