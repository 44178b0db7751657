"""How each character hears and speaks, and the kana readings learned for Latin words."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from avatarsite.tenants.models import TenantOwned
from avatarsite.tenants.provider_secrets import check_references, tenant_of
from characters.models import ENV_VAR_NAME, Character

from .stt import hook
from .turn_end import SMART_TURN, turn_end_hook


class TTSProvider(models.TextChoices):
    AUTO = "auto", "Automatic: local voices (Kokoro for Japanese, espeak-ng) when installed"
    NONE = "none", "No audio"
    ESPEAK = "espeak", "espeak-ng (local)"
    KOKORO = "kokoro", "Kokoro Japanese (local)"
    VOICEVOX = "voicevox", "VOICEVOX / AivisSpeech"
    OPENAI = "openai", "OpenAI speech"
    HTTP = "http", "HTTP synthesizer ({text}/{language} placeholders)"


class STTProvider(models.TextChoices):
    AUTO = "auto", "Automatic: local faster-whisper when installed, else none"
    NONE = "none", "None"
    LOCAL = "local", "Local faster-whisper"
    OPENAI = "openai", "OpenAI transcription"
    HTTP = "http", "HTTP recognizer (multipart WAV, JSON text)"


LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*")
HTTP_REQUEST_KEYS = {"method", "params", "headers", "json"}


class VoiceSettings(TenantOwned):
    """A character's voice (text-to-speech) and ears (speech-to-text). A character without a
    row uses the defaults: automatic providers, normal speed."""

    tenant_parent = "character"

    character = models.OneToOneField(
        Character, on_delete=models.CASCADE, primary_key=True, related_name="voice"
    )
    tts_provider = models.CharField(
        "TTS provider", max_length=16, choices=TTSProvider.choices, default=TTSProvider.AUTO
    )
    tts_voice = models.CharField(
        "TTS voice",
        max_length=100,
        blank=True,
        help_text="espeak-ng voice (blank: each sentence's language), Kokoro voice (blank: "
        "jf_alpha), VOICEVOX speaker id (blank: 46), or OpenAI voice (blank: alloy).",
    )
    tts_model = models.CharField(
        "TTS model", max_length=100, blank=True, help_text="OpenAI: blank is gpt-4o-mini-tts."
    )
    tts_base_url = models.URLField(
        "TTS URL",
        blank=True,
        help_text="VOICEVOX/AivisSpeech base URL (blank: http://127.0.0.1:50021), OpenAI base "
        "URL (blank: OPENAI_BASE_URL), or the HTTP synthesizer's URL.",
    )
    tts_api_key_env = models.CharField(
        "TTS API key variable",
        max_length=100,
        blank=True,
        validators=[ENV_VAR_NAME],
        help_text="Provider secret (or allowed platform variable) holding the key (OpenAI: "
        "blank is OPENAI_API_KEY; HTTP: sent as a Bearer token, so it must be a secret of "
        "yours).",
    )
    tts_http_request = models.JSONField(
        "HTTP synthesizer request",
        default=dict,
        blank=True,
        help_text='{"method": "POST", "params": {}, "headers": {}, "json": {"text": "{text}"}}; '
        "string values may hold {text} and {language}. Keep secrets in the key variable.",
    )
    tts_speed = models.FloatField(
        "TTS speed",
        default=1.0,
        validators=[MinValueValidator(0.25), MaxValueValidator(4.0)],
        help_text="1.0 is normal; a session may ask for its own speed.",
    )
    tts_sample_rate = models.PositiveIntegerField(
        "TTS sample rate",
        null=True,
        blank=True,
        help_text="Resample audio to this rate (Hz). Blank: the provider's own rate.",
    )
    style_map = models.JSONField(
        default=dict,
        blank=True,
        help_text='Tag found in a sentence → voice, e.g. {"[face:joy]": "3"} (VOICEVOX style).',
    )
    replacements = models.JSONField(
        default=list,
        blank=True,
        help_text='Applied before synthesis, in order: [["regex", "replacement"], ...].',
    )
    alphabet_to_kana = models.BooleanField(
        default=False,
        help_text="Japanese voices: read Latin words as katakana, asking the character's LLM "
        "once per new word and remembering the reading.",
    )
    stt_provider = models.CharField(
        "STT provider", max_length=16, choices=STTProvider.choices, default=STTProvider.AUTO
    )
    stt_model = models.CharField(
        "STT model",
        max_length=100,
        blank=True,
        help_text="OpenAI: blank is gpt-4o-mini-transcribe.",
    )
    stt_base_url = models.URLField(
        "STT URL",
        blank=True,
        help_text="OpenAI base URL (blank: OPENAI_BASE_URL) or the HTTP recognizer's URL.",
    )
    stt_api_key_env = models.CharField(
        "STT API key variable",
        max_length=100,
        blank=True,
        validators=[ENV_VAR_NAME],
        help_text="Provider secret (or allowed platform variable). OpenAI: blank is "
        "OPENAI_API_KEY; HTTP: sent as a Bearer token, so it must be a secret of yours.",
    )
    stt_language = models.CharField(
        "STT language", max_length=16, blank=True, help_text="Blank: the character's language."
    )
    stt_preprocess = models.CharField(
        "STT preprocessing hook",
        max_length=200,
        blank=True,
        help_text="module.function (async, in one of STT_HOOK_MODULES) given (session_id, "
        "audio) before recognition: returns the audio, or (audio, metadata); empty audio "
        "skips recognition.",
    )
    stt_postprocess = models.CharField(
        "STT postprocessing hook",
        max_length=200,
        blank=True,
        help_text="module.function (async, in one of STT_HOOK_MODULES) given (session_id, "
        "text, audio, preprocess metadata): returns the text, or (text, metadata).",
    )
    stt_languages = models.CharField(
        "STT languages",
        max_length=100,
        blank=True,
        help_text='Languages the character understands, comma separated, e.g. "ja, en". '
        "Speech in any other is refused with an error. Blank: the STT language only.",
    )
    barge_in_seconds = models.FloatField(
        "barge-in after (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(10.0)],
        help_text="Seconds of the user's speech that stop the character's reply on /ws. "
        "Blank: REALTIME_BARGE_IN_SECONDS. A session's barge_in_seconds wins.",
    )
    turn_end_hook = models.CharField(
        "turn-end hook",
        max_length=200,
        blank=True,
        help_text=f"Asked whether a pause ends the user's turn (/ws): {SMART_TURN} (Smart Turn "
        "v3, offline), or module.function (async, in one of STT_HOOK_MODULES) given "
        "(session_id, audio) returning True when the turn has ended. Blank: silence alone.",
    )

    class Meta:
        verbose_name = verbose_name_plural = "voice settings"

    def __str__(self) -> str:
        return f"Voice of {self.character}"

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        if not isinstance(self.style_map, dict) or not all(
            isinstance(v, str | int) for v in self.style_map.values()
        ):
            errors["style_map"] = "Expected an object of tag → voice."
        try:
            compile_replacements(self.replacements)
        except ValueError as exc:
            errors["replacements"] = str(exc)
        codes = [code.strip() for code in self.stt_languages.split(",") if code.strip()]
        if not all(LANGUAGE_CODE.fullmatch(code) for code in codes):
            errors["stt_languages"] = 'Expected language codes such as "ja, en".'
        for field in ("stt_preprocess", "stt_postprocess"):
            if path := getattr(self, field):
                try:
                    hook(path)
                except ValueError as exc:
                    errors[field] = str(exc)
        if self.turn_end_hook:
            try:
                turn_end_hook(self.turn_end_hook)
            except ValueError as exc:
                errors["turn_end_hook"] = str(exc)
        request = self.tts_http_request
        if not isinstance(request, dict) or not set(request) <= HTTP_REQUEST_KEYS:
            errors["tts_http_request"] = f"Expected an object with keys among {HTTP_REQUEST_KEYS}."
        for provider, field, url in (
            (self.tts_provider == TTSProvider.HTTP, "tts_base_url", self.tts_base_url),
            (self.stt_provider == STTProvider.HTTP, "stt_base_url", self.stt_base_url),
        ):
            if provider and not url:
                errors[field] = "The HTTP provider needs a URL."
        if errors:
            raise ValidationError(errors)
        self._check_keys()

    def _check_keys(self) -> None:
        """Keys name the tenant's secrets or allowed platform variables; a platform key only
        goes to its provider's own endpoint (blank URL), never to an HTTP provider's URL."""
        for provider, field, name, url in (
            (self.tts_provider, "tts_api_key_env", self.tts_api_key_env, self.tts_base_url),
            (self.stt_provider, "stt_api_key_env", self.stt_api_key_env, self.stt_base_url),
        ):
            if provider in (TTSProvider.OPENAI, STTProvider.OPENAI):
                check_references(
                    tenant_of(self), [name or "OPENAI_API_KEY"], endpoint=url, field=field
                )
            elif provider in (TTSProvider.HTTP, STTProvider.HTTP):
                check_references(tenant_of(self), [name], endpoint=url, field=field)


def compile_replacements(value: object) -> list[tuple[re.Pattern[str], str]]:
    """[["regex", "replacement"], ...] → compiled pairs; ValueError says what is wrong."""
    if not isinstance(value, list):
        raise ValueError("Expected a list of [regex, replacement] pairs.")
    compiled = []
    for pair in value:
        if not (
            isinstance(pair, list | tuple)
            and len(pair) == 2
            and all(isinstance(p, str) for p in pair)
        ):
            raise ValueError(f"Expected [regex, replacement], got {pair!r}.")
        try:
            compiled.append((re.compile(pair[0]), pair[1]))
        except re.error as exc:
            raise ValueError(f"Bad regex {pair[0]!r}: {exc}.") from exc
    return compiled


class KanaReading(models.Model):
    """How a Latin-alphabet word is read aloud in Japanese, learned once from the LLM and kept,
    so every later sentence with the word costs no LLM call."""

    word = models.CharField(max_length=100, unique=True)
    reading = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["word"]

    def __str__(self) -> str:
        return f"{self.word} → {self.reading}"
