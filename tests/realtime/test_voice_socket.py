"""The realtime socket /ws (wire §4) against a real daphne process: auth, the turn sequence,
WAV and raw-PCM downlink, voice turns from streamed speech, barge-in, session listing."""

from __future__ import annotations

import base64
import io
import wave

import httpx
import pytest
import websockets
from asgiref.sync import sync_to_async

from characters.models import Character
from channels_app.models import LiveSession
from conversations.models import Message, TurnRecord
from conversations.speech.models import STTProvider, TTSProvider, VoiceSettings
from tests.conftest import LLM_KEY_VARIABLE, AsgiServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.realtime.ws import Socket, subprotocol, types, ws_url
from tests.speech.audio import silence, utterance
from tests.speech.test_speech_api import require_local_stt

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = ScriptedReply(chunks=["One. ", "Two. ", "Three. ", "Four."], chunk_delay=1.0)


def wav_of(message: dict) -> wave.Wave_read:
    return wave.open(io.BytesIO(base64.b64decode(message["audio_data"])), "rb")


@sync_to_async
def turn_statuses() -> list[str]:
    return sorted(TurnRecord.objects.values_list("status", flat=True))


@sync_to_async
def history() -> list[str]:
    return list(Message.objects.order_by("context", "position").values_list("content", flat=True))


async def test_it_refuses_a_wrong_key_at_the_handshake(
    asgi_server: AsgiServer, character: Character
) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await Socket.open(asgi_server.url, "ak_wrong")

    assert refused.value.response.status_code == 403


async def test_it_echoes_the_auth_subprotocol_and_answers_start(
    asgi_server: AsgiServer, character: Character, api_key: str
) -> None:
    protocol = subprotocol(api_key)
    connection = await websockets.connect(
        ws_url(asgi_server.url), subprotocols=[protocol]  # type: ignore[list-item]
    )
    socket = Socket(connection, "browser-1")
    try:
        connected = await socket.start(user_id=None, context_id=None)
    finally:
        await socket.close()

    assert connection.subprotocol == protocol
    assert connected["session_id"] == "browser-1"
    assert connected["metadata"] == {"charactername": "Mia"}
    assert connected["user_id"]  # a new user, named by the server


async def test_it_answers_an_invoke_with_the_full_turn_sequence(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text="[face:joy]Hello! Nice to meet you."))
    socket = await Socket.open(asgi_server.url, api_key)
    try:
        await socket.start(user_id="u1")
        await socket.send("invoke", user_id="u1", text="Hi there")
        first = await socket.turn()
        await socket.send("invoke", user_id="u1", text="Again", context_id=first[2]["context_id"])
        second = await socket.turn()
    finally:
        await socket.close()

    assert types(first) == ["accepted", "stop", "start", "chunk", "chunk", "final"]
    chunk = first[3]
    assert chunk["avatar_control_request"]["face_name"] == "joy"
    assert chunk["voice_text"] == "Hello!" and chunk["metadata"]["is_first_chunk"] is True
    assert wav_of(chunk).getnframes() > 0
    assert first[-1]["text"] == "[face:joy]Hello! Nice to meet you."
    assert types(second)[:4] == ["final", "accepted", "stop", "start"]
    assert second[0]["metadata"] == {"interrupted": True} and second[0]["text"] == ""
    assert second[3]["context_id"] == first[2]["context_id"]
    assert second[-1]["text"] == "You said: Again. I have seen 2 user messages."
