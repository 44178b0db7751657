"""Text-to-speech behind one interface: VOICEVOX/AivisSpeech, OpenAI, espeak-ng, or any HTTP
synthesizer. Every provider's audio comes back as one well-formed WAV file
(docs/wire-protocols.md#audio).

`SpeechSynthesizer.synthesize` runs the preprocessors, looks the request up in the cache (keyed
by everything that shapes the audio: provider, endpoint, voice, speed, language and text),
calls the provider, checks that the answer is a WAV, resamples it when asked, and caches it.

Over ~400 lines on purpose: the interface, its cache and preprocessors and the providers (each
a short subclass) stay together, since every provider must hand back the same checked WAV.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import openai
from asgiref.sync import sync_to_async
from django.conf import settings

from conversations.llm import ChatMessage, LLMError, LLMProvider, LLMRequest
from conversations.llm.openai_compat import describe_failure, openai_client
from conversations.llm.sdk import http_failure_message

from .audio import AudioError, read_wav, resample_pcm, to_mono, wav_bytes
from .models import KanaReading

logger = logging.getLogger(__name__)

VOICEVOX_URL = "http://127.0.0.1:50021"
VOICEVOX_SPEAKER = "46"
OPENAI_TTS_MODEL = "gpt-4o-mini-tts"
OPENAI_VOICE = "alloy"
ESPEAK_WORDS_PER_MINUTE = 175  # espeak-ng's own default rate, scaled by speed


class TTSError(Exception):
    """Synthesis failed; the message is safe to show to a client."""


class NoVoiceForLanguage(TTSError):
    """The language is a well-formed tag, but no installed voice speaks it."""


class Preprocessor(Protocol):
    async def process(self, text: str, language: str | None) -> str: ...


class PatternReplacer:
    """Regex replacements in order, e.g. reading "3-5" as "3 to 5"."""

    def __init__(self, pairs: Sequence[tuple[re.Pattern[str], str]]) -> None:
        self.pairs = pairs

    async def process(self, text: str, language: str | None) -> str:
        for pattern, replacement in self.pairs:
            text = pattern.sub(replacement, text)
        return text


_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'.&-]*[A-Za-z]")
_KATAKANA = re.compile(r"^[\u30a0-\u30ff\u31f0-\u31ff ]+$")
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def _known_readings(words: list[str]) -> dict[str, str]:
    return dict(KanaReading.objects.filter(word__in=words).values_list("word", "reading"))


def _remember_readings(readings: dict[str, str]) -> None:
    KanaReading.objects.bulk_create(
        [KanaReading(word=w, reading=r) for w, r in readings.items()], ignore_conflicts=True
    )


class AlphabetToKana:
    """Latin words (3+ letters) → katakana for Japanese voices. Readings come from the LLM
    once per word and are kept in the database; an LLM failure leaves the words as they are."""

    min_length = 3

    def __init__(self, provider: LLMProvider, model: str) -> None:
        self.provider = provider
        self.model = model

    async def process(self, text: str, language: str | None) -> str:
        if language and not language.lower().startswith("ja"):
            return text  # an English sentence in a Japanese character's reply stays English
        words = sorted(
            {w for w in _LATIN_WORD.findall(text) if len(w) >= self.min_length}, key=len
        )[::-1]
        if not words:
            return text
        readings = await sync_to_async(_known_readings)(words)
        unknown = [w for w in words if w not in readings]
        if unknown:
            learned = await self._ask(unknown)
            if learned:
                await sync_to_async(_remember_readings)(learned)
                readings.update(learned)
        for word in words:  # longest first, so "JavaScript" wins over "Java"
            if word in readings:
                text = re.sub(rf"(?<![A-Za-z]){re.escape(word)}(?![A-Za-z])", readings[word], text)
        return text

    async def _ask(self, words: list[str]) -> dict[str, str]:
        prompt = (
            "Give the Japanese katakana reading of each word, as a JSON object mapping the "
            "word exactly as written to its reading. Answer with the JSON only.\n"
            + json.dumps(words, ensure_ascii=False)
        )
        request = LLMRequest(messages=[ChatMessage(role="user", content=prompt)], model=self.model)
        try:
            answer = "".join(
                [delta async for delta in self.provider.stream(request) if isinstance(delta, str)]
            )
            found = _JSON_OBJECT.search(answer)
            parsed = json.loads(found.group(0)) if found else {}
        except (LLMError, ValueError) as exc:
            logger.warning("kana readings unavailable, words read as written: %s", exc)
            return {}
        return {
            w: r.strip()
            for w, r in parsed.items()
            if w in words and isinstance(r, str) and _KATAKANA.match(r.strip())
        }


class TTSCache:
    """WAV files named by the SHA-256 of what shaped them."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.wav"

    def _read(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def _write(self, key: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Write then rename: a reader never sees half a file, even with concurrent writers.
        fd, temporary = tempfile.mkstemp(dir=self.directory, suffix=".part")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, self._path(key))

    async def get(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self._read, key)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, key, data)


def default_cache() -> TTSCache | None:
    return TTSCache(Path(settings.TTS_CACHE_DIR)) if settings.TTS_CACHE_DIR else None


def _http_failure(what: str, exc: httpx.HTTPError) -> TTSError:
    return TTSError(http_failure_message(what, exc))


class SpeechSynthesizer:
    name = "base"

    def __init__(
        self,
        *,
        voice: str,
        style_map: dict[str, str] | None = None,
        speed: float = 1.0,
        sample_rate: int | None = None,
        preprocessors: Sequence[Preprocessor] = (),
        cache: TTSCache | None = None,
    ) -> None:
        self.voice = voice
        self.style_map = style_map or {}
        self.speed = speed
        self.sample_rate = sample_rate
        self.preprocessors = preprocessors
        self.cache = cache

    def voice_for(self, styled_text: str) -> str:
        """The voice of the first style-map tag found in the sentence, else the default."""
        for tag, voice in self.style_map.items():
            if tag in styled_text:
                return str(voice)
        return self.voice

    def identity(self, text: str, voice: str, language: str | None, speed: float) -> list[Any]:
        """Everything besides the text that makes this provider's audio what it is."""
        return [voice, language, speed]

    async def generate(self, text: str, voice: str, language: str | None, speed: float) -> bytes:
        raise NotImplementedError

    async def synthesize(
        self,
        text: str,
        *,
        styled_text: str = "",
        language: str | None = None,
        speed: float | None = None,
    ) -> bytes:
        """One complete WAV file for `text`, or b"" when there is nothing to say."""
        for preprocessor in self.preprocessors:
            if not text.strip():
                break
            text = await preprocessor.process(text, language)
        if not text.strip():
            return b""
        voice = self.voice_for(styled_text or text)
        speed = speed or self.speed
        key = ""
        if self.cache is not None:
            identity = [self.name, *self.identity(text, voice, language, speed), self.sample_rate]
            material = json.dumps([identity, text], ensure_ascii=False, default=str)
            key = hashlib.sha256(material.encode()).hexdigest()
            if (cached := await self.cache.get(key)) is not None:
                return cached
        audio = self._normalised(await self.generate(text, voice, language, speed))
        if self.cache is not None:
            await self.cache.put(key, audio)
        return audio

    def _normalised(self, audio: bytes) -> bytes:
        """Check the provider really sent a WAV (an error page must never be played), and
        rewrite it with an exact header, at the configured rate."""
        try:
            wav = to_mono(read_wav(audio))
        except AudioError as exc:
            raise TTSError(f"{self.name} text-to-speech did not return WAV audio") from exc
        if not wav.pcm:
            raise TTSError(f"{self.name} text-to-speech returned no audio")
        rate = self.sample_rate or wav.sample_rate
        return wav_bytes(resample_pcm(wav.pcm, wav.sample_rate, rate), rate)


class VoicevoxSynthesizer(SpeechSynthesizer):
    """VOICEVOX and AivisSpeech: POST /audio_query, then POST /synthesis with that query."""

    name = "voicevox"

    def __init__(self, *, base_url: str = VOICEVOX_URL, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")

    def identity(self, text: str, voice: str, language: str | None, speed: float) -> list[Any]:
        return [f"{self.base_url}/synthesis", voice, speed]

    async def generate(self, text: str, voice: str, language: str | None, speed: float) -> bytes:
        try:
            async with httpx.AsyncClient(timeout=settings.TTS_TIMEOUT_SECONDS) as client:
                query = await client.post(
                    f"{self.base_url}/audio_query", params={"speaker": voice, "text": text}
                )
                query.raise_for_status()
                body = query.json()
                body["speedScale"] = speed
                audio = await client.post(
                    f"{self.base_url}/synthesis", params={"speaker": voice}, json=body
                )
                audio.raise_for_status()  # AIAvatarKit plays the error body; we refuse it
                return audio.content
        except httpx.HTTPError as exc:
            raise _http_failure("VOICEVOX", exc) from exc
        except ValueError as exc:
            raise TTSError("VOICEVOX returned an audio query that is not JSON") from exc


class OpenAISpeechSynthesizer(SpeechSynthesizer):
    """`POST {base_url}/audio/speech` through the openai SDK, asking for WAV."""

    name = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        model: str = OPENAI_TTS_MODEL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key
        self.base_url = base_url
        self.model = model

    def identity(self, text: str, voice: str, language: str | None, speed: float) -> list[Any]:
        return [self.base_url, self.model, voice, speed]

    async def generate(self, text: str, voice: str, language: str | None, speed: float) -> bytes:
        client = openai_client(
            self.base_url, self.api_key, timeout=settings.TTS_TIMEOUT_SECONDS, max_retries=1
        )
        try:
            response = await client.audio.speech.create(
                model=self.model, voice=voice, input=text, response_format="wav", speed=speed
            )
        except (openai.APIStatusError, openai.APIConnectionError) as exc:
            raise TTSError(describe_failure("OpenAI speech", exc)) from exc
        return response.content


def espeak_binary() -> str | None:
    return shutil.which(settings.ESPEAK_BINARY)


def espeak_voice(language: str) -> str:
    """espeak-ng names regional English and Portuguese voices in full, the rest by language."""
    tag = language.lower()
    return tag if tag in {"en-us", "en-gb", "pt-br"} else tag.split("-")[0]


@functools.cache
def espeak_languages(binary: str) -> frozenset[str]:
    """Every language name espeak-ng answers to: each voice's own and its aliases, e.g.
    `(zh 5)` on the Mandarin line. Asked once per process; it does not change while we run."""
    listing = subprocess.run(
        [binary, "--voices"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    names: set[str] = set()
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 1:
            names.add(fields[1].lower())
        names.update(alias.lower() for alias in re.findall(r"\(([^\s()]+) \d+\)", line))
    return frozenset(names)


class EspeakSynthesizer(SpeechSynthesizer):
    """espeak-ng, locally: robotic but instant, offline and in a hundred languages. With no
    voice set, each sentence is read by the voice of its language."""

    name = "espeak"

    def __init__(self, *, binary: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.binary = binary

    async def generate(self, text: str, voice: str, language: str | None, speed: float) -> bytes:
        if not voice:
            voice = espeak_voice(language or "en")
            if voice not in await asyncio.to_thread(espeak_languages, self.binary):
                raise NoVoiceForLanguage(f"No voice here speaks the language {language!r}.")
        rate = str(round(ESPEAK_WORDS_PER_MINUTE * speed))
        # Text goes through stdin, never argv: it cannot be mistaken for an option.
        process = await asyncio.create_subprocess_exec(
            self.binary, "-b", "1", "-v", voice, "-s", rate, "--stdout",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            audio, errors = await asyncio.wait_for(
                process.communicate(text.encode()), settings.TTS_TIMEOUT_SECONDS
            )
        except TimeoutError as exc:
            process.kill()
            await process.wait()
            raise TTSError("espeak-ng timed out") from exc
        if process.returncode != 0:
            detail = errors.decode(errors="replace").strip()[:200]
            raise TTSError(f"espeak-ng failed (exit {process.returncode}): {detail}")
        return audio


def substitute(value: Any, text: str, language: str) -> Any:
    """Fill {text} and {language} in every string, at any depth. Plain replacement, not
    str.format: other braces in the template (JSON, SSML) stay as written."""
    if isinstance(value, str):
        return value.replace("{text}", text).replace("{language}", language)
    if isinstance(value, dict):
        return {k: substitute(v, text, language) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, text, language) for v in value]
    return value


class HttpSynthesizer(SpeechSynthesizer):
    """An HTTP API described by a request template; the response body is the WAV."""

    name = "http"

    def __init__(
        self, *, url: str, request: dict[str, Any], headers: dict[str, str], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.url = url
        self.request = request
        self.headers = headers  # from the environment (keys); kept out of the cache key

    def _parts(self, text: str, language: str | None) -> dict[str, Any]:
        lang = language or ""
        return {
            "method": str(self.request.get("method", "POST")).upper(),
            # Placeholders in the URL itself are filled URL-encoded.
            "url": self.url.replace("{text}", quote(text)).replace("{language}", quote(lang)),
            "params": substitute(self.request.get("params") or {}, text, lang),
            "headers": substitute(self.request.get("headers") or {}, text, lang),
            "json": substitute(self.request.get("json"), text, lang),
        }

    def identity(self, text: str, voice: str, language: str | None, speed: float) -> list[Any]:
        return [self._parts(text, language)]

    async def generate(self, text: str, voice: str, language: str | None, speed: float) -> bytes:
        parts = self._parts(text, language)
        try:
            async with httpx.AsyncClient(timeout=settings.TTS_TIMEOUT_SECONDS) as client:
                response = await client.request(
                    parts["method"],
                    parts["url"],
                    params=parts["params"],
                    headers={**parts["headers"], **self.headers},
                    json=parts["json"],
                )
                response.raise_for_status()
        except httpx.HTTPError as exc:
            raise _http_failure("The speech server", exc) from exc
        return response.content
