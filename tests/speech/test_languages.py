"""Speech in Japanese and English, in process: uploads in the formats users send, language
detection that refuses a language the character does not understand, control tags kept out
of /tts, and replies voiced per sentence by the voice of their language."""

from __future__ import annotations

import base64
import os
import re
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from characters.models import Character
from conversations.llm import provider_for
from conversations.models import Message, TurnRecord
from conversations.speech.audio import read_wav, resample_pcm, to_mono, wav_bytes
from conversations.speech.models import TTSProvider, VoiceSettings
from conversations.speech.tts import AlphabetToKana
from conversations.speech.voices import recognizer_for, stt_languages
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp
from tests.speech.audio import (
    RATE,
    encoded,
    japanese,
    require_japanese_voice,
    require_local_stt,
    utterance,
)

pytestmark = pytest.mark.django_db

WEATHER = "東京の天気は晴れです。"
ESPEAK_RATE, KOKORO_RATE = 22050, 24000


def plain(text: str) -> str:
    """Text without punctuation or spaces, to compare what was said with what was heard."""
    return re.sub(r"[\s。、！？!?.,]", "", text)


def japanese_character(character: Character, **voice: Any) -> Character:
    character.language = "ja-JP"
    character.save()
    VoiceSettings.objects.create(character=character, **voice)
    return Character.objects.select_related("voice").get(pk=character.pk)


def post(path: str, key: str, content_type: str = "application/json", **kwargs: Any) -> Any:
    return Client().post(
        path, content_type=content_type, headers={"Authorization": f"Bearer {key}"}, **kwargs
    )


def heard(character: Character, wav: bytes) -> str:
    """What the character's own recognizer hears in a WAV of any rate."""
    recognizer = recognizer_for(character)
    assert recognizer is not None
    audio = to_mono(read_wav(wav))
    pcm = resample_pcm(audio.pcm, audio.sample_rate, RATE)
    return async_to_sync(recognizer.recognize)("s1", pcm).text or ""


def test_it_reads_the_languages_a_character_understands(character: Character) -> None:
    assert stt_languages(character) == ("en",)
    voice = VoiceSettings(character=character, stt_languages="ja-JP, en ,ja")
    character.voice = voice
    assert stt_languages(character) == ("ja", "en")
    voice.stt_languages = "ja, 日本"
    with pytest.raises(ValidationError, match="stt_languages"):
        voice.full_clean()


@pytest.mark.parametrize(
    ("content_type", "container", "codec", "rate"),
    [
        ("audio/ogg", "ogg", "libopus", 48000),
        ("audio/mpeg", "mp3", "libmp3lame", 44100),
        ("audio/mp4", "ipod", "aac", 44100),
        ("audio/webm", "webm", "libopus", 48000),
        ("audio/wav", "wav", "pcm_s24le", 44100),
    ],
)
def test_stt_transcribes_the_formats_users_send(
    app: InProcessApp,
    character: Character,
    api_key: str,
    content_type: str,
    container: str,
    codec: str,
    rate: int,
) -> None:
    require_local_stt()
    audio = encoded(utterance().pcm, container, codec, rate)

    response = post("/stt", api_key, content_type, data=audio)

    assert response.status_code == 200, response.content
    assert "capital of france" in response.json()["text"].lower()


@pytest.mark.parametrize("content_type", ["", "audio/ogg", "audio/mpeg"])
def test_stt_refuses_bytes_that_are_not_audio(
    app: InProcessApp, character: Character, api_key: str, content_type: str
) -> None:
    response = post("/stt", api_key, content_type, data=os.urandom(5000))

    assert response.status_code == 400
    assert response.json()["error"].startswith("Audio could not be decoded")


def test_noise_declared_as_raw_pcm_is_not_transcribed(
    app: InProcessApp, character: Character, api_key: str
) -> None:
    require_local_stt()
    noise = SimpleUploadedFile("n.pcm", os.urandom(32000), "application/octet-stream")

    response = Client().post(
        "/transcribe", data={"audio": noise}, headers={"Authorization": f"Bearer {api_key}"}
    )

    assert response.status_code == 200
    assert response.json()["text"] == ""


def test_tts_does_not_read_control_tags_aloud(
    app: InProcessApp, character: Character, api_key: str
) -> None:
    VoiceSettings.objects.create(character=character, tts_provider=TTSProvider.ESPEAK)

    tagged = post("/tts", api_key, data={"text": "[face:joy]Hello <animation name='wave'/>there"})
    plain_text = post("/synthesize", api_key, data={"text": "Hello there"})
    tags_only = post("/tts", api_key, data={"text": "[face:joy]"})

    assert tagged.status_code == plain_text.status_code == 200
    assert tagged.content == plain_text.content
    assert tags_only.status_code == 400
    assert tags_only.json() == {"error": "Nothing to say: the text holds only control tags."}


def test_tts_speaks_japanese_in_the_japanese_voice_and_stt_hears_it_back(
    app: InProcessApp, character: Character, api_key: str
) -> None:
    require_japanese_voice()
    require_local_stt()
    VoiceSettings.objects.create(character=character, stt_languages="en, ja")

    spoken = post("/tts", api_key, data={"text": f"[face:joy]{WEATHER}", "language": "ja-JP"})
    wav = read_wav(spoken.content)
    back = post("/stt", api_key, "audio/wav", data=spoken.content)

    assert spoken.status_code == 200 and wav.sample_rate == KOKORO_RATE
    assert back.status_code == 200, back.content
    assert plain(back.json()["text"]) == plain(WEATHER)


def test_japanese_speech_to_an_english_only_character_is_refused(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    require_local_stt()
    speech = japanese(WEATHER)

    over_stt = post("/stt", api_key, "audio/wav", data=wav_bytes(speech, RATE))
    over_chat = app.post_sse(
        "/chat",
        {"type": "start", "session_id": "s1", "audio_data": base64.b64encode(speech).decode()},
        key=api_key,
    )

    assert over_stt.status_code == 422
    [problem] = over_stt.json()["detail"]
    assert problem["type"] == "language"
    assert "'ja'" in problem["msg"] and "understands en" in problem["msg"]
    assert over_chat.types == ["error"]
    assert "understands en" in over_chat.events[0]["metadata"]["error"]
    assert fake_llm.requests == [] and not Message.objects.exists()
    assert TurnRecord.objects.get().status == TurnRecord.Status.FAILED


def test_a_japanese_question_is_answered_in_japanese_audio(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    require_local_stt()
    mia = japanese_character(character)
    reply = "明日は雨が降るでしょう。"
    fake_llm.script(ScriptedReply(text=f"[face:joy]{reply}"))

    result = app.post_sse(
        "/chat",
        {
            "type": "start",
            "session_id": "s1",
            "audio_data": base64.b64encode(japanese(WEATHER)).decode(),
        },
        key=api_key,
    )

    assert result.types[0] == "start" and result.types[-1] == "final", result.events
    assert plain(result.events[0]["metadata"]["recognized_text"]) == plain(WEATHER)
    assert plain(fake_llm.requests[0]["messages"][-1]["content"]) == plain(WEATHER)
    [chunk] = result.of_type("chunk")
    audio = base64.b64decode(chunk["audio_data"])
    assert read_wav(audio).sample_rate == KOKORO_RATE
    assert plain(heard(mia, audio)) == plain(reply)


def test_a_bilingual_reply_is_voiced_by_two_voices_in_order(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    require_japanese_voice()
    japanese_character(character, stt_provider="none")
    fake_llm.script(
        ScriptedReply(text="[language:en]Good morning. [language:ja]おはようございます。")
    )

    result = app.post_sse("/chat", {"type": "start", "session_id": "s1", "text": "Hi"}, key=api_key)

    chunks = result.of_type("chunk")
    assert [c["voice_text"] for c in chunks] == ["Good morning.", "おはようございます。"]
    rates = [read_wav(base64.b64decode(c["audio_data"])).sample_rate for c in chunks]
    assert rates == [ESPEAK_RATE, KOKORO_RATE]


def test_kana_readings_apply_to_japanese_sentences_only(
    character: Character, fake_llm: FakeOpenAI
) -> None:
    kana = AlphabetToKana(provider_for(character), character.llm_model)

    english = async_to_sync(kana.process)("Python is fun.", "en-US")

    assert english == "Python is fun."
    assert fake_llm.requests == []  # no reading was asked for
