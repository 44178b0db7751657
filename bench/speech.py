"""Benchmark speech: Silero VAD streams per core (unbatched and batched), and the English and
Japanese speech stacks on fixed sentences: word/character error rates and real-time factors.

Everything runs in this process on speech made locally (espeak-ng for English, the Kokoro
voice for Japanese), transcribed back by faster-whisper; nothing touches the network. The VAD
figure is audio seconds processed per CPU second of this process (all its threads, ONNX
Runtime's included): how many live 16 kHz streams one fully used core can keep up with.
Real-time factor = processing time / audio duration (below 1 is faster than speech); CPU s per
audio s is the same with this process's CPU time, less sensitive to a busy machine.

    make bench-speech
    python -m bench.speech --streams 1,16,64 --seconds 10 --sentences 24
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "avatarsite.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "insecure-key-for-benchmarks-only")
django.setup()

from bench.harness import add_smoke_flag, machine_description  # noqa: E402
from bench.speech_sentences import ENGLISH, JAPANESE  # noqa: E402
from conversations.speech.audio import pcm_to_float, read_wav, resample_pcm, to_mono  # noqa: E402
from conversations.speech.kokoro import KOKORO_VOICE, KokoroSynthesizer, kokoro_available  # noqa: E402
from conversations.speech.stt import (  # noqa: E402
    LocalWhisperRecognizer,
    SpeechRecognizer,
    detect_language,
    local_model_path,
    multilingual_available,
)
from conversations.speech.tts import EspeakSynthesizer, SpeechSynthesizer, espeak_binary  # noqa: E402
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
    cpu, wall = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(one(f"s{n}") for n in range(streams)))
    cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
    batcher.close()
    audio_seconds = streams * len(audio) / 2 / RATE
    mean_batch = (batcher.windows - windows_before) / max(1, batcher.batches - batches_before)
    return audio_seconds / cpu, audio_seconds / wall, mean_batch


def edit_distance(reference: Sequence[str], heard: Sequence[str]) -> int:
    """Levenshtein distance between two token sequences (substitutions, insertions, deletions)."""
    previous = list(range(len(heard) + 1))
    for i, token in enumerate(reference, 1):
        current = [i]
        for j, other in enumerate(heard, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (token != other))
            )
        previous = current
    return previous[-1]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def characters(text: str) -> list[str]:
    """Japanese is scored by character: letters and digits, punctuation and spaces left out."""
    return [c for c in text if c.isalnum()]


@dataclass
class Spoken:
    text: str
    pcm: bytes  # 16 kHz PCM16, what the recognizer hears

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / RATE


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished children (espeak-ng).

    The process's own time comes from `process_time`: `os.times` counts in clock ticks
    (10 ms), which a smoke-sized run can finish inside of, reading zero."""
    children = os.times()
    return time.process_time() + children.children_user + children.children_system


@dataclass
class Timing:
    wall: float = 0.0
    cpu: float = 0.0
    audio: float = 0.0

    def add(self, wall: float, cpu: float, audio: float) -> None:
        self.wall, self.cpu, self.audio = self.wall + wall, self.cpu + cpu, self.audio + audio


async def speak_all(
    synthesizer: SpeechSynthesizer, texts: Sequence[str]
) -> tuple[list[Spoken], Timing]:
    timing = Timing()
    spoken = []
    for text in texts:
        wall, cpu = time.perf_counter(), cpu_seconds()
        wav = to_mono(read_wav(await synthesizer.synthesize(text, speed=1.0)))
        timing.add(time.perf_counter() - wall, cpu_seconds() - cpu, wav.duration)
        spoken.append(Spoken(text, resample_pcm(wav.pcm, wav.sample_rate, RATE)))
    return spoken, timing


async def recognise_all(
    recognizer: SpeechRecognizer, spoken: list[Spoken], tokens: Callable[[str], list[str]]
) -> tuple[float, Timing]:
    """The error rate over every sentence (errors / reference tokens), and the time taken."""
    await recognizer.recognize("warm-up", spoken[0].pcm)  # loads the models
    timing, errors, total = Timing(), 0, 0
    for sentence in spoken:
        wall, cpu = time.perf_counter(), cpu_seconds()
        heard = (await recognizer.recognize("bench", sentence.pcm)).text or ""
        timing.add(time.perf_counter() - wall, cpu_seconds() - cpu, sentence.seconds)
        reference = tokens(sentence.text)
        errors += edit_distance(reference, tokens(heard))
        total += len(reference)
    return errors / total, timing


def detections(spoken: dict[str, list[Spoken]]) -> tuple[int, int]:
    """How many sentences the multilingual model assigns to their own language."""
    right = sum(
        detect_language(pcm_to_float(sentence.pcm))[0] == language
        for language, sentences in spoken.items()
        for sentence in sentences
    )
    return right, sum(len(s) for s in spoken.values())


async def languages(count: int) -> None:
    """Accuracy and cost of the English and Japanese stacks on the fixed sentences."""
    english_model = local_model_path()
    if english_model is None or not multilingual_available() or not kokoro_available():
        print("\nSpeech stacks: the local-speech extra is not fully installed; skipped")
        return
    binary = espeak_binary()
    if binary is None:
        print("\nSpeech stacks: espeak-ng is not installed; skipped")
        return
    english, english_tts = await speak_all(
        EspeakSynthesizer(binary=binary, voice="en-us"), ENGLISH[:count]
    )
    japanese, japanese_tts = await speak_all(
        KokoroSynthesizer(voice=KOKORO_VOICE), JAPANESE[:count]
    )
    stacks = [
        ("en  espeak-ng -> tiny.en", english, ("en",), english_model, words, "WER"),
        ("en  espeak-ng -> base", english, ("en", "ja"), None, words, "WER"),
        ("ja  Kokoro -> base", japanese, ("ja",), None, characters, "CER"),
    ]
    print(f"\nSpeech stacks, {count} fixed sentences per language (bench/speech_sentences.py);")
    print("Each recognizer detects the language with base first; CPU: this process and children.")
    print("stack                     | error      | STT CPU s per audio s | STT RTF (wall)")
    for name, spoken, understood, english_path, tokens, measure in stacks:
        recognizer = LocalWhisperRecognizer(languages=understood, english_path=english_path)
        rate, timing = await recognise_all(recognizer, spoken, tokens)
        print(
            f"{name:25} | {measure} {rate:6.1%} | {timing.cpu / timing.audio:21.2f} | "
            f"{timing.wall / timing.audio:14.2f}"
        )
    right, total = detections({"en": english, "ja": japanese})
    print(f"language detection (base): {right}/{total} sentences in their own language")
    print("TTS                       | CPU s per audio s | RTF (wall)")
    for name, timing in (("espeak-ng en-us", english_tts), ("Kokoro jf_alpha (ja)", japanese_tts)):
        print(f"{name:25} | {timing.cpu / timing.audio:17.2f} | {timing.wall / timing.audio:10.2f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="1,16,64", help="concurrent VAD streams per level")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per VAD stream")
    parser.add_argument(
        "--sentences", type=int, default=len(JAPANESE), help="fixed sentences per language"
    )
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.streams, args.seconds, args.sentences = "1", 1.0, 2
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
    await languages(args.sentences)


if __name__ == "__main__":
    asyncio.run(main())
