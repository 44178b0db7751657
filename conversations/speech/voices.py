"""Which recognizer and synthesizer a character uses, built from its VoiceSettings."""

from __future__ import annotations

from django.conf import settings

from avatarsite.tenants.provider_secrets import resolve
from characters.models import Character
from conversations.llm import provider_for

from .models import STTProvider, TTSProvider, VoiceSettings, compile_replacements
from .stt import (
    HttpSpeechRecognizer,
    LocalWhisperRecognizer,
    OpenAISpeechRecognizer,
    SpeechRecognizer,
    STTError,
    local_model_path,
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
    espeak_voice,
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


def recognizer_for(character: Character) -> SpeechRecognizer | None:
    """None when no speech-to-text is configured (or, on auto, the local extra is missing)."""
    voice = voice_settings(character)
    common = {
        "language": voice.stt_language or character.language,
        "sample_rate": settings.SPEECH_SAMPLE_RATE,
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
    path = local_model_path()
    if path is None:
        if voice.stt_provider == STTProvider.LOCAL:
            raise STTError("Local speech-to-text needs the local-speech extra installed")
        return None
    return LocalWhisperRecognizer(model_path=path, **common)


def synthesizer_for(character: Character) -> SpeechSynthesizer | None:
    """None when the character is configured without audio (or, on auto, espeak-ng is
    missing)."""
    voice = voice_settings(character)
    preprocessors: list[Preprocessor] = []
    if voice.replacements:
        preprocessors.append(PatternReplacer(compile_replacements(voice.replacements)))
    if voice.alphabet_to_kana:
        preprocessors.append(AlphabetToKana(provider_for(character), character.llm_model))
    common = {
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
    binary = espeak_binary()
    if binary is None:
        if voice.tts_provider == TTSProvider.ESPEAK:
            raise TTSError("espeak-ng is not installed on this server")
        return None
    return EspeakSynthesizer(
        binary=binary, voice=voice.tts_voice or espeak_voice(character.language), **common
    )
