"""Real speech for the speech tests: espeak-ng says it, we resample it to 16 kHz PCM16."""

from __future__ import annotations

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
