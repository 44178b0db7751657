"""Speech over HTTP against a real daphne process: `/chat` with audio in and WAV per chunk
out, `/stt`, `/transcribe`, `/tts`, `/synthesize`, and what bad audio gets.

Over ~400 lines on purpose: the speech endpoints (and /chat with audio) share their audio
helpers and voice settings.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import wave
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from characters.models import Character
from conversations.models import Context, EndUser, Message, TurnRecord
from conversations.speech.audio import read_wav, wav_bytes
from conversations.speech.models import STTProvider, TTSProvider, VoiceSettings
from tests.conftest import LLM_KEY_VARIABLE, AsgiServer
from tests.fakes.openai_server import FakeOpenAI, Journal, ScriptedReply
from tests.fakes.voicevox_server import FakeVoicevox
from tests.speech.audio import QUESTION, RATE, require_local_stt, silence, utterance
from tests.sse import SSEResult, post_sse
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def nothing_written() -> bool:
    return not (
        Message.objects.exists()
        or Context.objects.exists()
        or EndUser.objects.exists()
        or TurnRecord.objects.exists()
    )


def chat_audio(server: AsgiServer, key: str, pcm: bytes, **fields: Any) -> SSEResult:
    body = {
        "type": "start",
        "session_id": "s1",
        "user_id": "u1",
        "audio_data": base64.b64encode(pcm).decode(),
        **fields,
    }
    return post_sse(f"{server.url}/chat", body, key=key, timeout=60)


def wav_of(chunk: dict[str, Any]) -> wave.Wave_read:
    return wave.open(io.BytesIO(base64.b64decode(chunk["audio_data"])), "rb")


def voice(character: Character, **settings: Any) -> VoiceSettings:
    return VoiceSettings.objects.create(character=character, **settings)


def test_it_answers_a_spoken_question_with_wav_per_chunk(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    require_local_stt()
    fake_llm.script(ScriptedReply(text="[face:joy]Paris! It is the capital of France."))

    result = chat_audio(asgi_server, api_key, utterance().pcm)

    assert result.types[0] == "start" and result.types[-1] == "final", result.events
    recognized = result.events[0]["metadata"]["recognized_text"]
    assert "capital of france" in recognized.lower()
    assert fake_llm.requests[0]["messages"][-1]["content"] == recognized
    chunks = result.of_type("chunk")
    assert [c["voice_text"] for c in chunks] == ["Paris!", "It is the capital of France."]
    for chunk in chunks:
        audio = wav_of(chunk)  # a complete WAV each, as AIAvatarKit's clients need
        assert audio.getnchannels() == 1 and audio.getnframes() > 0
    record = TurnRecord.objects.get()
    assert record.status == TurnRecord.Status.COMPLETED
    assert record.request_text == recognized
    assert record.stt_ms > 0 and record.tts_ms > 0 and record.first_audio_ms > 0
    assert Message.objects.filter(role="user").get().content == recognized


def test_it_sends_empty_audio_for_chunks_without_speech(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text="Hello. [face:joy]\n"))

    result = post_sse(
        f"{asgi_server.url}/chat",
        {"type": "start", "session_id": "s1", "text": "Hi"},
        key=api_key,
    )

    chunks = result.of_type("chunk")
    assert [(c["voice_text"], bool(c["audio_data"])) for c in chunks] == [
        ("Hello.", True),
        ("", False),
    ]
    assert chunks[1]["audio_data"] == ""


def test_it_sends_null_audio_when_the_character_is_mute(
    asgi_server: AsgiServer, character: Character, api_key: str
) -> None:
    voice(character, tts_provider=TTSProvider.NONE)

    result = post_sse(
        f"{asgi_server.url}/chat", {"type": "start", "session_id": "s1", "text": "Hi"}, key=api_key
    )

    assert {c["audio_data"] for c in result.of_type("chunk")} == {None}


def test_it_synthesises_sentence_one_while_the_llm_writes_sentence_two(
    asgi_server: AsgiServer,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    fake_voicevox: FakeVoicevox,
) -> None:
    voice(character, tts_provider=TTSProvider.VOICEVOX, tts_base_url=fake_voicevox.url)
    journal = Journal()
    fake_llm.journal = fake_voicevox.journal = journal
    first, second = "First sentence here.", " And this is the second one, a longer sentence."
    # The model stops writing after the start of sentence two until sentence one has gone to
    # the engine: a pipeline that waited for the whole answer would never send it.
    writing = threading.Event()
    fake_llm.script(
        ScriptedReply(
            chunks=[first, " And this is", " the second one,", " a longer sentence."],
            pause_after=2,
            resume=writing,
        )
    )
    # Sentence one's audio is held until the engine is asked for sentence two: a pipeline
    # that waited for one sentence's audio before reading on would never get there.
    release = fake_voicevox.hold("First sentence")

    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(
            post_sse,
            f"{asgi_server.url}/chat",
            {"type": "start", "session_id": "s1", "text": "Talk"},
            key=api_key,
            timeout=60,
        )
        wait_until(
            lambda: any(
                r["params"].get("text", "").startswith("First") for r in fake_voicevox.requests
            ),
            "sentence one sent to TTS while the model is still writing",
        )
        writing.set()
        wait_until(
            lambda: any(
                r["params"].get("text", "").startswith("And this") for r in fake_voicevox.requests
            ),
            "sentence two sent to TTS",
        )
        release.set()
        result = pending.result()

    last_llm_piece = " a longer sentence."
    assert journal.position("voicevox", "audio_query First") < journal.position(
        "llm", last_llm_piece
    )
    assert journal.position("voicevox", "audio_query And this") < journal.position(
        "voicevox", "synthesized First"
    )
    chunks = result.of_type("chunk")
    assert [c["voice_text"] for c in chunks] == [first, second.strip()]
    assert all(read_wav(base64.b64decode(c["audio_data"])).pcm for c in chunks)


def test_it_records_an_interrupted_turn_when_the_client_leaves_while_it_speaks(
    asgi_server: AsgiServer,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    fake_voicevox: FakeVoicevox,
) -> None:
    voice(character, tts_provider=TTSProvider.VOICEVOX, tts_base_url=fake_voicevox.url)
    fake_llm.script(ScriptedReply(text="First. Second. Third."))
    release = fake_voicevox.hold("Second")  # the turn cannot finish while the client is there

    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST",
            f"{asgi_server.url}/chat",
            json={"type": "start", "session_id": "s1", "text": "Hi"},
            headers={"Authorization": f"Bearer {api_key}"},
        ) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data:") and json.loads(line[5:])["type"] == "chunk":
                break  # leave after the first sentence, while the second is being synthesised

    wait_until(TurnRecord.objects.exists, "the turn record")
    release.set()
    record = TurnRecord.objects.get()
    assert record.status == TurnRecord.Status.INTERRUPTED
    assert not Message.objects.exists() and not Context.objects.exists()


def test_it_fails_the_turn_when_text_to_speech_is_down(
    asgi_server: AsgiServer,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    fake_voicevox: FakeVoicevox,
) -> None:
    voice(character, tts_provider=TTSProvider.VOICEVOX, tts_base_url=fake_voicevox.url)
    fake_voicevox.fail("/audio_query", status=503, times=10)

    result = post_sse(
        f"{asgi_server.url}/chat",
        {"type": "start", "session_id": "s1", "text": "Hi"},
        key=api_key,
    )

    assert result.types[-1] == "error"
    assert result.events[-1]["metadata"]["error"] == "VOICEVOX returned HTTP 503"
    record = TurnRecord.objects.get()
    assert (record.status, record.error) == (TurnRecord.Status.FAILED, "VOICEVOX returned HTTP 503")
    assert not Message.objects.exists() and not Context.objects.exists()


def test_it_fails_the_turn_when_speech_to_text_is_down(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    voice(
        character,
        stt_provider=STTProvider.OPENAI,
        stt_base_url=fake_llm.base_url,
        stt_api_key_env=LLM_KEY_VARIABLE,
    )
    fake_llm.script_audio(ScriptedReply(status=503, repeat=2))

    result = chat_audio(asgi_server, api_key, silence(1.0))

    assert result.types == ["error"]
    assert "HTTP 503" in result.events[0]["metadata"]["error"]
    assert len(fake_llm.audio_requests) == 2 and fake_llm.requests == []
    assert TurnRecord.objects.get().status == TurnRecord.Status.FAILED
    assert not Message.objects.exists()


def test_it_transcribes_with_openai_when_configured(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    voice(
        character,
        stt_provider=STTProvider.OPENAI,
        stt_base_url=fake_llm.base_url,
        stt_api_key_env=LLM_KEY_VARIABLE,
        tts_provider=TTSProvider.NONE,
    )
    fake_llm.script_audio(ScriptedReply(text="Good morning"))

    result = chat_audio(asgi_server, api_key, silence(1.0))

    assert result.events[0]["metadata"]["recognized_text"] == "Good morning"
    assert result.events[-1]["text"] == "You said: Good morning. I have seen 1 user messages."


@pytest.mark.parametrize(
    ("audio", "error"),
    [
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "could not be decoded"),
        (bytes(3), "even number of bytes"),
        (silence(61.0), "the limit is 60 s"),
    ],
)
def test_it_refuses_bad_audio_in_chat_and_writes_nothing(
    asgi_server: AsgiServer, character: Character, api_key: str, audio: bytes, error: str
) -> None:
    result = chat_audio(asgi_server, api_key, audio)

    assert result.status == 400
    assert error in result.body["error"]
    assert nothing_written()


def post_stt(server: AsgiServer, key: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    return httpx.post(f"{server.url}{path}", headers=headers, timeout=60, **kwargs)


def test_it_transcribes_a_wav_posted_to_stt(
    asgi_server: AsgiServer, character: Character, api_key: str
) -> None:
    require_local_stt()

    response = post_stt(
        asgi_server,
        api_key,
        "/stt",
        content=wav_bytes(utterance().pcm, RATE),
        headers={"Content-Type": "audio/wav"},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert "capital of france" in body["text"].lower()
    assert set(body) == {"text", "preprocess_metadata", "postprocess_metadata", "speakers"}


def test_it_transcribes_raw_pcm_posted_to_transcribe(
    asgi_server: AsgiServer, character: Character, api_key: str
) -> None:
    require_local_stt()

    response = post_stt(
        asgi_server,
        api_key,
        "/transcribe",
        files={"audio": ("voice.pcm", utterance().pcm, "application/octet-stream")},
        data={"session_id": "s1"},
    )

    assert response.status_code == 200, response.text
    assert "capital of france" in response.json()["text"].lower()


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "expected"),
    [
        ("/stt", {"content": b""}, 400, {"error": "audio data is required."}),
        (
            "/transcribe",
            {"files": {"audio": ("v.wav", b"", "audio/wav")}},
            400,
            {"error": "audio data is required."},
        ),
        ("/transcribe", {"data": {"session_id": "s1"}, "files": {"x": ("x", b"1")}}, 422, None),
        (
            "/stt",
            {"content": b"not a wav!", "headers": {"Content-Type": "audio/wav"}},
            400,
            {"error": "Audio was declared as audio/wav but is not a WAV file."},
        ),
    ],
)
def test_it_refuses_bad_uploads(
    asgi_server: AsgiServer,
    character: Character,
    api_key: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    expected: dict[str, Any] | None,
) -> None:
    response = post_stt(asgi_server, api_key, path, **kwargs)

    assert response.status_code == status
    if expected is not None:
        assert response.json() == expected
    else:
        assert response.json()["detail"][0]["loc"] == ["body", "audio"]


@pytest.mark.parametrize("path", ["/stt", "/transcribe", "/tts", "/synthesize"])
def test_it_requires_an_api_key_for_speech(
    asgi_server: AsgiServer, character: Character, path: str
) -> None:
    response = httpx.post(f"{asgi_server.url}{path}", content=b"x", timeout=10)

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid or missing API Key"}


def test_it_says_when_speech_to_text_is_off(
    asgi_server: AsgiServer, character: Character, api_key: str
) -> None:
    voice(character, stt_provider=STTProvider.NONE)

    response = post_stt(
        asgi_server,
        api_key,
        "/stt",
        content=silence(1.0),
        headers={"Content-Type": "application/octet-stream"},
    )

    assert response.status_code == 503
    assert response.json() == {"error": "Speech-to-text is not configured on this server."}


@pytest.mark.parametrize("path", ["/tts", "/synthesize"])
def test_it_synthesises_text_to_a_wav_file(
    asgi_server: AsgiServer, character: Character, api_key: str, path: str
) -> None:
    response = post_stt(asgi_server, api_key, path, json={"text": QUESTION})

    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["content-disposition"] == "attachment; filename=voice.wav"
    assert read_wav(response.content).duration > 1.0


def test_it_uses_the_style_and_speed_of_the_request(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_voicevox: FakeVoicevox
) -> None:
    voice(
        character,
        tts_provider=TTSProvider.VOICEVOX,
        tts_base_url=fake_voicevox.url,
        style_map={"[face:joy]": "3"},
    )

    response = post_stt(
        asgi_server,
        api_key,
        "/tts",
        json={"text": "やった", "style_info": {"styled_text": "[face:joy]やった", "speed": 1.5}},
    )

    assert response.status_code == 200
    synthesis = fake_voicevox.requests[-1]
    assert synthesis["params"] == {"speaker": "3"} and synthesis["json"]["speedScale"] == 1.5


@pytest.mark.parametrize(
    ("body", "status"),
    [({"text": ""}, 400), ({}, 400), ({"text": "hi", "style_info": {"speed": 9}}, 422)],
)
def test_it_refuses_bad_synthesis_requests(
    asgi_server: AsgiServer, character: Character, api_key: str, body: Any, status: int
) -> None:
    response = post_stt(asgi_server, api_key, "/tts", json=body)

    assert response.status_code == status
    if status == 400:
        assert response.json() == {"error": "text is required."}


@pytest.mark.parametrize(
    "body", [{"text": "hello", "language": "zz"}, {"text": "[language:zz-QQ]hello"}]
)
def test_it_says_no_voice_speaks_a_well_formed_language_nobody_has(
    asgi_server: AsgiServer, character: Character, api_key: str, body: dict[str, str]
) -> None:
    response = post_stt(asgi_server, api_key, "/tts", json=body)
    spoken = post_stt(asgi_server, api_key, "/tts", json={"text": "hello", "language": "zh"})

    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["type"] == "language" and "No voice here speaks" in problem["msg"]
    assert spoken.status_code == 200  # an alias espeak-ng lists (zh for Mandarin) still speaks


def test_it_reports_a_synthesizer_that_is_down(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_voicevox: FakeVoicevox
) -> None:
    voice(character, tts_provider=TTSProvider.VOICEVOX, tts_base_url=fake_voicevox.url)
    fake_voicevox.fail("/synthesis", status=500)

    response = post_stt(asgi_server, api_key, "/synthesize", json={"text": "hello"})

    assert response.status_code == 502
    assert response.json() == {"error": "VOICEVOX returned HTTP 500"}


def test_it_takes_a_session_speed_in_chat_metadata(
    asgi_server: AsgiServer,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    fake_voicevox: FakeVoicevox,
) -> None:
    voice(character, tts_provider=TTSProvider.VOICEVOX, tts_base_url=fake_voicevox.url)
    fake_llm.script(ScriptedReply(text="One."))

    post_sse(
        f"{asgi_server.url}/chat",
        {"type": "start", "session_id": "s1", "text": "Hi", "metadata": {"speech_speed": 0.8}},
        key=api_key,
    )
    refused = post_sse(
        f"{asgi_server.url}/chat",
        {"type": "start", "session_id": "s1", "text": "Hi", "metadata": {"speech_speed": "x"}},
        key=api_key,
    )

    assert fake_voicevox.requests[-1]["json"]["speedScale"] == 0.8
    assert refused.status == 422
