"""A Japanese question spoken into /ws reaches the LLM as the right Japanese text and is
answered in Japanese audio that transcribes back to the reply. In process: Channels'
communicator, the Silero VAD, Whisper and the Kokoro voice."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from characters.models import Character
from conversations.speech.audio import read_wav
from tests.conftest import LLM_KEY_VARIABLE
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.realtime.inprocess_ws import connect, stream, turn
from tests.speech.audio import japanese, require_local_stt
from tests.speech.test_languages import KOKORO_RATE, WEATHER, heard, japanese_character, plain


@pytest.mark.django_db(transaction=True)
def test_a_japanese_question_over_ws_is_answered_in_japanese_audio(
    character: Character, api_key: str, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_local_stt()
    monkeypatch.setenv(LLM_KEY_VARIABLE, fake_llm.api_key)
    hana = japanese_character(character)
    reply = "明日は雨が降るでしょう。"
    fake_llm.script(ScriptedReply(text=f"[face:joy]{reply}"))

    async def ask() -> list[dict[str, Any]]:
        communicator = await connect(api_key, "ja")
        try:
            await stream(communicator, "ja", japanese(WEATHER) + bytes(32000))
            return await turn(communicator)
        finally:
            await communicator.disconnect(timeout=30)

    messages = async_to_sync(ask)()

    start = next(m for m in messages if m["type"] == "start")
    assert plain(start["metadata"]["recognized_text"]) == plain(WEATHER)
    assert plain(fake_llm.requests[0]["messages"][-1]["content"]) == plain(WEATHER)
    [chunk] = [m for m in messages if m["type"] == "chunk"]
    audio = base64.b64decode(chunk["audio_data"])
    assert read_wav(audio).sample_rate == KOKORO_RATE
    assert plain(heard(hana, audio)) == plain(reply)
