"""Text-to-speech providers against the fake VOICEVOX engine and the fake OpenAI server, local
espeak-ng, the HTTP synthesizer, preprocessors and the cache."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from characters.models import Character
from conversations.llm import provider_for
from conversations.speech.audio import read_wav
from conversations.speech.models import KanaReading, TTSProvider, VoiceSettings
from conversations.speech.tts import (
    AlphabetToKana,
    EspeakSynthesizer,
    HttpSynthesizer,
    OpenAISpeechSynthesizer,
    PatternReplacer,
    TTSCache,
    TTSError,
    VoicevoxSynthesizer,
    substitute,
)
from conversations.speech.voices import synthesizer_for
from tests.conftest import LLM_KEY_VARIABLE
from tests.fakes.openai_server import SPEECH_SAMPLE_RATE, FakeOpenAI, ScriptedReply
from tests.fakes.voicevox_server import FakeVoicevox
from tests.speech.audio import require_espeak


def voicevox(engine: FakeVoicevox, **kwargs: object) -> VoicevoxSynthesizer:
    return VoicevoxSynthesizer(base_url=engine.url, voice="46", **kwargs)


async def test_it_calls_voicevox_in_two_steps(fake_voicevox: FakeVoicevox) -> None:
    audio = await voicevox(fake_voicevox).synthesize("こんにちは")

    query, synthesis = fake_voicevox.requests
    assert (query["path"], query["params"]) == (
        "/audio_query",
        {"speaker": "46", "text": "こんにちは"},
    )
    assert (synthesis["path"], synthesis["params"]) == ("/synthesis", {"speaker": "46"})
    assert synthesis["json"]["kana"] == "こんにちは" and synthesis["json"]["speedScale"] == 1.0
    wav = read_wav(audio)
    assert wav.sample_rate == 24000 and len(wav.pcm) > 0


async def test_it_picks_the_voice_from_the_style_map(fake_voicevox: FakeVoicevox) -> None:
    synthesizer = voicevox(fake_voicevox, style_map={"[face:joy]": "3"})

    await synthesizer.synthesize("やった", styled_text="[face:joy]やった")
    await synthesizer.synthesize("ふつう", styled_text="ふつう")

    speakers = [r["params"]["speaker"] for r in fake_voicevox.requests]
    assert speakers == ["3", "3", "46", "46"]


async def test_it_passes_the_session_speed_to_voicevox(fake_voicevox: FakeVoicevox) -> None:
    slow = await voicevox(fake_voicevox).synthesize("ゆっくり", speed=0.5)
    normal = await voicevox(fake_voicevox).synthesize("ゆっくり")

    assert fake_voicevox.requests[1]["json"]["speedScale"] == 0.5
    assert len(slow) > 1.9 * len(normal) - 100


async def test_it_refuses_an_error_body_as_audio(fake_voicevox: FakeVoicevox) -> None:
    fake_voicevox.fail("/synthesis", status=500)

    with pytest.raises(TTSError, match="VOICEVOX returned HTTP 500"):
        await voicevox(fake_voicevox).synthesize("こんにちは")


async def test_it_reports_an_unreachable_engine() -> None:
    synthesizer = VoicevoxSynthesizer(base_url="http://127.0.0.1:9", voice="46")

    with pytest.raises(TTSError, match="unreachable"):
        await synthesizer.synthesize("こんにちは")


async def test_it_resamples_to_the_configured_rate(fake_voicevox: FakeVoicevox) -> None:
    audio = await voicevox(fake_voicevox, sample_rate=16000).synthesize("こんにちは")

    assert read_wav(audio).sample_rate == 16000


async def test_it_serves_repeated_sentences_from_the_cache(
    fake_voicevox: FakeVoicevox, tmp_path: Path
) -> None:
    synthesizer = voicevox(fake_voicevox, cache=TTSCache(tmp_path))

    first = await synthesizer.synthesize("こんにちは")
    again = await synthesizer.synthesize("こんにちは")
    faster = await synthesizer.synthesize("こんにちは", speed=1.5)

    assert again == first and faster != first
    assert len(fake_voicevox.requests) == 4  # two sentences synthesised, one served from disk
    assert len(os.listdir(tmp_path)) == 2


async def test_it_says_nothing_for_blank_text(fake_voicevox: FakeVoicevox) -> None:
    assert await voicevox(fake_voicevox).synthesize("  ") == b""
    assert fake_voicevox.requests == []


async def test_it_asks_openai_for_wav(fake_llm: FakeOpenAI) -> None:
    synthesizer = OpenAISpeechSynthesizer(
        api_key=fake_llm.api_key, base_url=fake_llm.base_url, voice="nova"
    )

    audio = await synthesizer.synthesize("Hello there.", speed=1.25)

    [request] = fake_llm.audio_requests
    assert request["input"] == "Hello there." and request["voice"] == "nova"
    assert (request["model"], request["response_format"], request["speed"]) == (
        "gpt-4o-mini-tts",
        "wav",
        1.25,
    )
    assert read_wav(audio).sample_rate == SPEECH_SAMPLE_RATE


async def test_it_reports_openai_speech_failures(fake_llm: FakeOpenAI) -> None:
    fake_llm.script_audio(ScriptedReply(status=500, repeat=2))
    synthesizer = OpenAISpeechSynthesizer(
        api_key=fake_llm.api_key, base_url=fake_llm.base_url, voice="nova"
    )

    with pytest.raises(TTSError, match="HTTP 500"):
        await synthesizer.synthesize("Hello there.")


async def test_it_speaks_locally_with_espeak() -> None:
    synthesizer = EspeakSynthesizer(binary=require_espeak(), voice="en-us")

    normal = read_wav(await synthesizer.synthesize("-v --help is not an option here."))
    fast = read_wav(await synthesizer.synthesize("-v --help is not an option here.", speed=2))

    assert normal.sample_rate == 22050 and normal.duration > 1.0
    assert fast.duration < 0.7 * normal.duration


async def test_it_fills_placeholders_in_an_http_synthesizer(fake_llm: FakeOpenAI) -> None:
    synthesizer = HttpSynthesizer(
        url=f"{fake_llm.base_url}/audio/speech",
        request={
            "json": {
                "input": "{text}",
                "voice": "{language}",
                "model": "literal {braces} stay",
                "nested": {"list": ["{text}"]},
            }
        },
        headers={"Authorization": f"Bearer {fake_llm.api_key}"},
        voice="",
    )

    audio = await synthesizer.synthesize("Hi {there}", language="en-US")

    [request] = fake_llm.audio_requests
    assert request["input"] == "Hi {there}" and request["voice"] == "en-US"
    assert request["model"] == "literal {braces} stay"
    assert request["nested"] == {"list": ["Hi {there}"]}
    assert read_wav(audio).channels == 1


async def test_it_refuses_a_non_wav_answer(fake_llm: FakeOpenAI) -> None:
    synthesizer = HttpSynthesizer(
        url=f"{fake_llm.base_url}/models",
        request={"method": "GET"},
        headers={"Authorization": f"Bearer {fake_llm.api_key}"},
        voice="",
    )

    with pytest.raises(TTSError, match="did not return WAV"):
        await synthesizer.synthesize("Hello")


def test_it_substitutes_without_str_format() -> None:
    assert substitute({"a": "{text}{}{0}{language}", "n": 3}, "x", "") == {"a": "x{}{0}", "n": 3}


async def test_it_applies_pattern_replacements_before_synthesis(
    fake_voicevox: FakeVoicevox,
) -> None:
    replacer = PatternReplacer([(re.compile(r"(\d+)-(\d+)"), r"\1から\2")])

    await voicevox(fake_voicevox, preprocessors=[replacer]).synthesize("3-5個")

    assert fake_voicevox.requests[0]["params"]["text"] == "3から5個"


@pytest.fixture
def llm_key(fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    """The character's key variable, so it speaks through the fake LLM in this process."""
    monkeypatch.setenv(LLM_KEY_VARIABLE, fake_llm.api_key)


@pytest.mark.django_db(transaction=True)
async def test_it_learns_kana_readings_once_and_keeps_them(
    fake_llm: FakeOpenAI, fake_voicevox: FakeVoicevox, character: Character, llm_key: None
) -> None:
    fake_llm.script(ScriptedReply(text='Sure: {"Python": "パイソン", "Django": "ジャンゴ"}'))
    kana = AlphabetToKana(provider_for(character), character.llm_model)
    synthesizer = voicevox(fake_voicevox, preprocessors=[kana])

    await synthesizer.synthesize("PythonとDjangoが好き。AI")
    await synthesizer.synthesize("Djangoです")

    texts = [r["params"]["text"] for r in fake_voicevox.requests if r["path"] == "/audio_query"]
    assert texts == ["パイソンとジャンゴが好き。AI", "ジャンゴです"]
    assert len(fake_llm.requests) == 1  # the second sentence needed no LLM
    assert await KanaReading.objects.filter(word="Django").aexists()


@pytest.mark.django_db(transaction=True)
async def test_it_reads_words_as_written_when_the_llm_fails(
    fake_llm: FakeOpenAI, fake_voicevox: FakeVoicevox, character: Character, llm_key: None
) -> None:
    fake_llm.script(ScriptedReply(status=500, repeat=5))
    kana = AlphabetToKana(provider_for(character), character.llm_model)

    await voicevox(fake_voicevox, preprocessors=[kana]).synthesize("Pythonです")

    assert fake_llm.requests  # the LLM was asked, and failed
    assert fake_voicevox.requests[0]["params"]["text"] == "Pythonです"
    assert not await KanaReading.objects.aexists()


@pytest.mark.django_db
def test_it_builds_each_characters_synthesizer_from_its_settings(
    character: Character, fake_voicevox: FakeVoicevox
) -> None:
    VoiceSettings.objects.create(
        character=character,
        tts_provider=TTSProvider.VOICEVOX,
        tts_base_url=fake_voicevox.url,
        tts_voice="888753764",
        tts_speed=1.2,
        style_map={"[face:joy]": "1"},
        replacements=[["AI", "エーアイ"]],
    )
    character = Character.objects.select_related("voice").get(pk=character.pk)

    synthesizer = synthesizer_for(character)

    assert isinstance(synthesizer, VoicevoxSynthesizer)
    assert (synthesizer.voice, synthesizer.speed, synthesizer.style_map) == (
        "888753764",
        1.2,
        {"[face:joy]": "1"},
    )
    assert isinstance(synthesizer.preprocessors[0], PatternReplacer)
    assert synthesizer.base_url == fake_voicevox.url
