"""Usage per turn from every provider that reports it, and where it is reported back: tokens
from Anthropic's and Dify's streams (the fakes' own counts), speech seconds spoken, the API key
a turn came in with, and `usage` in Dify-compatible answers."""

from __future__ import annotations

import base64

import pytest

from characters.models import Character, LLMProvider
from conversations.models import ApiKey, TurnRecord
from conversations.speech.audio import read_wav
from conversations.speech.models import STTProvider, TTSProvider, VoiceSettings
from tests.conftest import ANTHROPIC_KEY_VARIABLE, DIFY_KEY_VARIABLE, LLM_KEY_VARIABLE
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.anthropic_server import ScriptedReply as ClaudeReply
from tests.fakes.dify_server import FakeDify
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply, message_text, split_into_deltas
from tests.fakes.voicevox_server import FakeVoicevox
from tests.inprocess import InProcessApp
from tests.speech.audio import silence

pytestmark = pytest.mark.django_db


def hello(text: str | None = "Hello there", **fields: object) -> dict[str, object]:
    return {"type": "start", "session_id": "s1", "user_id": "u1", "text": text, **fields}


def test_a_claude_turn_records_the_tokens_anthropic_counted(
    app: InProcessApp, api_key: str, fake_anthropic: FakeAnthropic
) -> None:
    Character.objects.create(
        slug="claudia",
        name="Claudia",
        llm_provider=LLMProvider.ANTHROPIC,
        llm_model="claude-haiku-4-5",
        llm_base_url=fake_anthropic.base_url,
        llm_api_key_env=ANTHROPIC_KEY_VARIABLE,
        is_default=True,
    )
    fake_anthropic.script(ClaudeReply(chunks=["Nice ", "to ", "meet ", "you."]))

    result = app.post_sse("/chat", hello(), key=api_key)

    assert result.types[-1] == "final"
    sent = fake_anthropic.requests[-1]
    # The fake counts the words it was sent (system included) and one token per delta.
    words = sum(len(message_text(m).split()) for m in sent["messages"])
    record = TurnRecord.objects.get()
    assert record.tokens_in == words + len(sent["system"].split())
    assert record.tokens_out == 4


def test_a_dify_app_turn_records_message_ends_usage(
    app: InProcessApp, api_key: str, fake_dify: FakeDify
) -> None:
    Character.objects.create(
        slug="difi",
        name="Difi",
        llm_provider=LLMProvider.DIFY,
        llm_model="dify-app",
        llm_base_url=fake_dify.base_url,
        llm_api_key_env=DIFY_KEY_VARIABLE,
        is_default=True,
    )

    asked = "Count these four words"
    result = app.post_sse("/chat", hello(asked), key=api_key)

    assert result.types[-1] == "final"
    record = TurnRecord.objects.get()
    # The fake counts the query's words, and answers in word-sized deltas.
    assert record.tokens_in == 4
    assert record.tokens_out == len(split_into_deltas(f"You said: {asked}. Turn 1 of our chat."))


def test_dify_compatible_answers_carry_the_turns_usage(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(chunks=["One ", "two."]), ScriptedReply(chunks=["Three."]))
    body = {"inputs": {}, "query": "Hi", "user": "u1"}

    streamed = app.post_sse("/chat-messages", {**body, "response_mode": "streaming"}, key=api_key)
    blocking = app.post_sse("/chat-messages", {**body, "response_mode": "blocking"}, key=api_key)

    end = next(e for e in streamed.events if e["event"] == "message_end")
    first, second = TurnRecord.objects.order_by("started_at")
    assert end["metadata"]["usage"] == {
        "prompt_tokens": first.tokens_in,
        "completion_tokens": 2,
        "total_tokens": first.tokens_in + 2,
    }
    assert blocking.body["metadata"]["usage"]["completion_tokens"] == second.tokens_out == 1


def test_a_turn_records_its_api_key_and_the_speech_it_spoke(
    app: InProcessApp,
    character: Character,
    api_key: str,
    fake_llm: FakeOpenAI,
    fake_voicevox: FakeVoicevox,
) -> None:
    VoiceSettings.objects.create(
        character=character,
        stt_provider=STTProvider.OPENAI,
        stt_base_url=fake_llm.base_url,
        stt_api_key_env=LLM_KEY_VARIABLE,
        tts_provider=TTSProvider.VOICEVOX,
        tts_base_url=fake_voicevox.url,
    )
    fake_llm.script_audio(ScriptedReply(text="Good morning"))
    fake_llm.script(ScriptedReply(text="Hello there. Nice day."))
    audio = base64.b64encode(silence(1.5)).decode()

    result = app.post_sse("/chat", hello(None, audio_data=audio), key=api_key)

    assert result.types[-1] == "final"
    spoken = [
        read_wav(base64.b64decode(e["audio_data"])).duration
        for e in result.events
        if e["type"] == "chunk" and e["audio_data"]
    ]
    record = TurnRecord.objects.get()
    assert len(spoken) == 2
    assert record.speech_out_seconds == pytest.approx(sum(spoken))
    assert record.speech_in_seconds == pytest.approx(1.5)
    assert record.api_key == ApiKey.objects.get()
    # A character that does not record keeps no audio.
    assert not record.request_audio and not record.response_audio
