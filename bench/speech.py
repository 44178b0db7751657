"""Benchmark speech: Silero VAD streams per core (unbatched and batched), and the real-time
factors of local speech-to-text (faster-whisper tiny.en) and text-to-speech (espeak-ng).

Everything runs in this process on real speech made by espeak-ng; nothing touches the
network. The VAD figure is audio seconds processed per CPU second of this process (all its
threads, ONNX Runtime's included): how many live 16 kHz streams one fully used core can keep
up with. Real-time factor = processing time / audio duration (below 1 is faster than speech).

    make bench-speech
    python -m bench.speech --streams 1,16,64 --seconds 10 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from datetime import UTC, datetime

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatarsite.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "insecure-key-for-benchmarks-only")
django.setup()

from bench.harness import add_smoke_flag, machine_description  # noqa: E402
from conversations.speech.audio import read_wav  # noqa: E402
from conversations.speech.stt import LocalWhisperRecognizer, local_model_path  # noqa: E402
from conversations.speech.tts import EspeakSynthesizer, espeak_binary  # noqa: E402
from conversations.speech.vad import SileroBatcher, SileroSpeechDetector  # noqa: E402
from tests.speech.audio import RATE, chunks, utterance  # noqa: E402

SENTENCES = (
    "What is the capital of France?",
    "Paris has been the capital of France for more than a thousand years.",
    "Would you like to hear about its museums, or about the food?",
)
FRAME_SECONDS = 0.032  # one Silero window per call, as a browser client streams audio


def stream_audio(seconds: float) -> bytes:
    """Speech with pauses, repeated to `seconds`: the VAD sees onsets, speech and silence."""
    piece = b"".join(utterance(text, before=0.3, after=0.7).pcm for text in SENTENCES)
    audio = piece * (int(seconds * RATE * 2 / len(piece)) + 1)
    return audio[: int(seconds * RATE) * 2]


async def vad_run(streams: int, audio: bytes, batched: bool) -> tuple[float, float, float]:
    batcher = SileroBatcher(max_batch=256 if batched else 1)
    detector = SileroSpeechDetector(batcher=batcher)
    frames = chunks(audio, FRAME_SECONDS)

    async def one(session: str) -> None:
        for frame in frames:
            await detector.process(session, frame)

    await one("warm-up")
    batches_before, windows_before = batcher.batches, batcher.windows
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(f"s{n}") for n in range(streams)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    batcher.close()
    audio_seconds = streams * len(audio) / 2 / RATE
    mean_batch = (batcher.windows - windows_before) / max(1, batcher.batches - batches_before)
    return audio_seconds / cpu, audio_seconds / wall, mean_batch


async def stt_rtf(runs: int) -> tuple[float, float] | None:
    path = local_model_path()
    if path is None:
        return None
    recognizer = LocalWhisperRecognizer(languages=("en",), english_path=path)
    pcm = utterance(" ".join(SENTENCES), before=0.2, after=0.3).pcm
    await recognizer.recognize("warm-up", pcm)  # loads the model
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await recognizer.recognize("bench", pcm)
        times.append(time.perf_counter() - started)
    return statistics.median(times) / (len(pcm) / 2 / RATE), len(pcm) / 2 / RATE


async def tts_rtf(runs: int) -> float | None:
    binary = espeak_binary()
    if binary is None:
        return None
    synthesizer = EspeakSynthesizer(binary=binary, voice="en-us")  # no cache: every call works
    ratios = []
    for _ in range(runs):
        for sentence in SENTENCES:
            started = time.perf_counter()
            audio = await synthesizer.synthesize(sentence)
            ratios.append((time.perf_counter() - started) / read_wav(audio).duration)
    return statistics.median(ratios)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="1,16,64", help="concurrent VAD streams per level")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per VAD stream")
    parser.add_argument("--runs", type=int, default=3, help="STT/TTS repetitions (median)")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.streams, args.seconds, args.runs = "1", 1.0, 1
    machine = machine_description()
    print("avatarsite speech benchmark")
    print(
        f"machine : {machine['cpu_model']}, {machine['cores']} cores "
        f"({machine['cores_usable']} usable), Linux {machine['kernel']}, "
        f"Python {machine['python']}, {datetime.now(UTC):%Y-%m-%d}"
    )
    audio = stream_audio(args.seconds)
    print(f"\nSilero VAD (ONNX Runtime, 1 thread), {args.seconds:g} s of speech per stream,")
    print(f"fed {FRAME_SECONDS * 1000:g} ms frames")
    print("streams | mode      | real-time streams per core | x real time (wall) | mean batch")
    for streams in [int(s) for s in args.streams.split(",")]:
        for batched in (False, True):
            per_core, wall, batch = await vad_run(streams, audio, batched)
            mode = "batched" if batched else "unbatched"
            print(f"{streams:7d} | {mode:9} | {per_core:26.0f} | {wall:18.0f} | {batch:10.1f}")
    stt = await stt_rtf(args.runs)
    if stt is None:
        print("\nSTT: the local-speech extra is not installed; skipped")
    else:
        print(f"\nSTT faster-whisper tiny.en int8, {stt[1]:.1f} s of speech: RTF {stt[0]:.3f}")
    tts = await tts_rtf(args.runs)
    if tts is None:
        print("TTS: espeak-ng is not installed; skipped")
    else:
        print(f"TTS espeak-ng, {len(SENTENCES)} sentences, no cache: RTF {tts:.3f} (median)")


if __name__ == "__main__":
    asyncio.run(main())
