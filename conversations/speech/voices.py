"""Which recognizer and synthesizer a character uses, built from its VoiceSettings."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from avatarsite.tenants.provider_secrets import resolve
from characters.models import Character
from conversations.llm import provider_for

from .kokoro import KOKORO_VOICE, KokoroSynthesizer, kokoro_available, kokoro_voices
from .models import STTProvider, TTSProvider, VoiceSettings, compile_replacements
from .stt import (
    HttpSpeechRecognizer,
    LocalWhisperRecognizer,
    OpenAISpeechRecognizer,
    SpeechRecognizer,
    STTError,
    base_language,
    hook,
    local_model_path,
    multilingual_available,
)
from .tts import (
    OPENAI_TTS_MODEL,
    OPENAI_VOICE,
    VOICEVOX_SPEAKER,
    VOICEVOX_URL,
    AlphabetToKana,
    EspeakSynthesizer,
    HttpSynthesizer,
    OpenAISpeechSynthesizer,
    PatternReplacer,
    Preprocessor,
    SpeechSynthesizer,
    TTSError,
    VoicevoxSynthesizer,
    default_cache,
    espeak_binary,
)


def voice_settings(character: Character) -> VoiceSettings:
    """The character's settings, or unsaved defaults. Load characters with
    `select_related("voice")` so this never queries (it runs on the event loop)."""
    try:
        return character.voice
    except VoiceSettings.DoesNotExist:
        return VoiceSettings(character=character)


def _key(character: Character, variable: str, default: str, what: str) -> str:
    name = variable or default
    key = resolve(character, name)
    if not key:
        raise (TTSError if what == "speech" else STTError)(
            f"OpenAI {what} needs an API key: no provider secret or allowed platform variable "
            f"named {name} is set"
        )
    return key


def _bearer(character: Character, variable: str) -> dict[str, str]:
    key = resolve(character, variable)
    return {"Authorization": f"Bearer {key}"} if key else {}


def stt_languages(character: Character) -> tuple[str, ...]:
    """The languages (ISO 639-1) the character understands, its main one first."""
    voice = voice_settings(character)
    listed = [code for code in voice.stt_languages.replace(" ", "").split(",") if code]
    codes = [base_language(code) or "" for code in listed] or [
        base_language(voice.stt_language or character.language) or "en"
    ]
    return tuple(dict.fromkeys(codes))


def recognizer_for(character: Character) -> SpeechRecognizer | None:
    """None when no speech-to-text is configured (or, on auto, the local extra is missing)."""
    voice = voice_settings(character)
    languages = stt_languages(character)
    try:  # checked when saved; this catches a hook whose module left STT_HOOK_MODULES since
        hooks = {
            name: hook(path)
            for name, path in (
                ("preprocess", voice.stt_preprocess),
                ("postprocess", voice.stt_postprocess),
            )
            if path
        }
    except ValueError as exc:
        raise STTError(f"Speech-to-text hook refused: {exc}") from exc
    common: dict[str, Any] = {
        # One language is named to remote recognizers; several leave detection to them.
        "language": languages[0] if len(languages) == 1 else None,
        "sample_rate": settings.SPEECH_SAMPLE_RATE,
        **hooks,
    }
    match voice.stt_provider:
        case STTProvider.NONE:
            return None
        case STTProvider.OPENAI:
            return OpenAISpeechRecognizer(
                api_key=_key(character, voice.stt_api_key_env, "OPENAI_API_KEY", "transcription"),
                base_url=voice.stt_base_url or None,
                model=voice.stt_model or "gpt-4o-mini-transcribe",
                **common,
            )
        case STTProvider.HTTP:
            return HttpSpeechRecognizer(
                url=voice.stt_base_url, headers=_bearer(character, voice.stt_api_key_env), **common
            )
    # English-only characters keep the small tiny.en model for transcription (half the CPU
    # of base, docs/speech.md); every other language needs the multilingual model.
    english = local_model_path() if languages == ("en",) else None
    multilingual = multilingual_available()
    if english is None and not multilingual:
        if voice.stt_provider == STTProvider.AUTO and local_model_path() is None:
            return None  # the local-speech extra is not installed
        raise STTError(
            f"Local speech-to-text in {', '.join(languages)} needs the multilingual "
            "Whisper model (the local-speech extra)"
        )
        return None
    return LocalWhisperRecognizer(
        languages=languages, english_path=english, multilingual=multilingual, **common
    )


class LanguageRouter(SpeechSynthesizer):
    """Each sentence to the voice of its language (the `[language:xx]` tag, else the
    character's), as AIAvatarKit's TTS router does: a bilingual reply is read by two voices."""

    name = "router"

    def __init__(self, *, routes: dict[str, SpeechSynthesizer], default: SpeechSynthesizer) -> None:
        super().__init__(voice=default.voice, speed=default.speed)
        self.routes = routes
        self.default = default

    def route(self, language: str | None) -> SpeechSynthesizer:
        return self.routes.get(base_language(language) or "", self.default)

    async def synthesize(
        self,
        text: str,
        *,
        styled_text: str = "",
        language: str | None = None,
        speed: float | None = None,
    ) -> bytes:
        return await self.route(language).synthesize(
            text, styled_text=styled_text, language=language, speed=speed
        )


def _local_voices(voice: VoiceSettings, common: dict[str, Any]) -> SpeechSynthesizer | None:
    """The offline voices: Kokoro for Japanese sentences when installed, espeak-ng (by each
    sentence's language, unless a voice is named) for the rest."""
    kokoro = None
    if kokoro_available():
        named = voice.tts_voice if voice.tts_voice in kokoro_voices() else KOKORO_VOICE
        kokoro = KokoroSynthesizer(voice=named, **common)
    binary = espeak_binary()
    espeak = None
    if binary is not None:
        named = "" if voice.tts_voice in kokoro_voices() else voice.tts_voice
        espeak = EspeakSynthesizer(binary=binary, voice=named, **common)
    if voice.tts_provider == TTSProvider.KOKORO:
        if kokoro is None:
            raise TTSError("Kokoro Japanese text-to-speech (local-speech extra) is not installed")
        return kokoro
    if voice.tts_provider == TTSProvider.ESPEAK and espeak is None:
        raise TTSError("espeak-ng is not installed on this server")
    if voice.tts_provider == TTSProvider.ESPEAK or kokoro is None:
        return espeak
    if espeak is None:
        return kokoro
    return LanguageRouter(routes={"ja": kokoro}, default=espeak)


def synthesizer_for(character: Character) -> SpeechSynthesizer | None:
    """None when the character is configured without audio (or, on auto, no local voice is
    installed)."""
    voice = voice_settings(character)
    preprocessors: list[Preprocessor] = []
    if voice.replacements:
        preprocessors.append(PatternReplacer(compile_replacements(voice.replacements)))
    if voice.alphabet_to_kana:
        preprocessors.append(AlphabetToKana(provider_for(character), character.llm_model))
    common: dict[str, Any] = {
        "style_map": {str(k): str(v) for k, v in voice.style_map.items()},
        "speed": voice.tts_speed,
        "sample_rate": voice.tts_sample_rate,
        "preprocessors": preprocessors,
        "cache": default_cache(),
    }
    match voice.tts_provider:
        case TTSProvider.NONE:
            return None
        case TTSProvider.VOICEVOX:
            return VoicevoxSynthesizer(
                base_url=voice.tts_base_url or VOICEVOX_URL,
                voice=voice.tts_voice or VOICEVOX_SPEAKER,
                **common,
            )
        case TTSProvider.OPENAI:
            return OpenAISpeechSynthesizer(
                api_key=_key(character, voice.tts_api_key_env, "OPENAI_API_KEY", "speech"),
                base_url=voice.tts_base_url or None,
                model=voice.tts_model or OPENAI_TTS_MODEL,
                voice=voice.tts_voice or OPENAI_VOICE,
                **common,
            )
        case TTSProvider.HTTP:
            return HttpSynthesizer(
                url=voice.tts_base_url,
                request=voice.tts_http_request,
                headers=_bearer(character, voice.tts_api_key_env),
                voice=voice.tts_voice,
                **common,
            )
    return _local_voices(voice, common)
