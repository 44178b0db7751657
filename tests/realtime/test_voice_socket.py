"""The realtime socket /ws (docs/wire-protocols.md#realtime-voice-ws): the turn sequence, WAV
and raw-PCM downlink, voice turns from streamed speech and barge-in in process (Channels'
communicator); the handshake, session listing and the channel layer's timing against a real
daphne process."""

from __future__ import annotations

import base64
import io
import wave
from typing import Any

import httpx
import pytest
import websockets
from asgiref.sync import sync_to_async
from channels_redis.core import RedisChannelLayer  # type: ignore[import-untyped]
from django.conf import settings

from channels_app.models import LiveSession
from characters.models import Character
from conversations.models import Message
from conversations.speech.models import TTSProvider
from tests.conftest import AsgiServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp
from tests.realtime.turns import SLOW, heard_by_fake_stt, talk_over_a_reply, turns
from tests.realtime.ws import Socket, subprotocol, types, ws_url
from tests.speech.audio import require_local_stt, silence, utterance
from tests.waiting import wait_until_async

pytestmark = pytest.mark.django_db(transaction=True)


def wav_of(message: dict) -> wave.Wave_read:
    return wave.open(io.BytesIO(base64.b64decode(message["audio_data"])), "rb")


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
        ws_url(asgi_server.url),
        subprotocols=[protocol],  # type: ignore[list-item]
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
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text="[face:joy]Hello! Nice to meet you."))
    socket = await Socket.open(app.url, api_key)
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


async def test_it_answers_streamed_speech_with_a_voice_turn(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    require_local_stt()
    fake_llm.script(ScriptedReply(text="Paris! It is the capital of France."))
    socket = await Socket.open(app.url, api_key)
    try:
        await socket.start(user_id="u1")
        await socket.stream(utterance(after=1.0).pcm)
        messages = await socket.turn()
    finally:
        await socket.close()

    assert types(messages) == ["accepted", "stop", "start", "chunk", "chunk", "final"]
    recognized = messages[2]["metadata"]["recognized_text"]
    assert "capital of france" in recognized.lower()
    assert all(wav_of(m).getnframes() > 0 for m in messages[3:5])
    assert await history() == [recognized, "Paris! It is the capital of France."]


async def test_barge_in_stops_the_answer_at_once(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    require_local_stt()
    fake_llm.script(SLOW, ScriptedReply(text="Paris."))
    first, rest = await talk_over_a_reply(app.url, api_key, {"barge_in_enabled": True})

    accepted = types(rest).index("accepted")
    assert "chunk" not in types(rest)[accepted:][: types(rest)[accepted:].index("start")]
    assert types(rest)[accepted:][:3] == ["accepted", "stop", "start"]
    cut_short = first[-1]["text"] + "".join(
        m["text"] for m in rest[:accepted] if m["type"] == "chunk"
    )
    assert cut_short.startswith("One.") and "Four." not in cut_short
    assert rest[-1]["type"] == "final" and rest[-1]["text"] == "Paris."
    assert [status for status, _ in await turns()] == ["interrupted", "completed"]
    assert "Tell me a long story" not in await history()


async def test_it_cancels_a_turn_without_speech(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    await heard_by_fake_stt(character, fake_llm)
    fake_llm.script_audio(ScriptedReply(text=""))
    socket = await Socket.open(app.url, api_key)
    try:
        await socket.start(user_id="u1")
        audio = base64.b64encode(silence(1.0)).decode()
        await socket.send("invoke", audio_data=audio)
        messages = await socket.turn()
    finally:
        await socket.close()

    assert types(messages) == ["accepted", "canceled"]
    assert messages[1]["metadata"] == {"reason": "No speech recognized."}
    assert fake_llm.requests == [] and await history() == []


async def test_it_streams_raw_pcm_slices_when_asked(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text="Hello there."))
    socket = await Socket.open(app.url, api_key)
    try:
        await socket.start(user_id="u1", metadata={"response_audio_chunk_size": 4000})
        await socket.send("invoke", text="Hi")
        messages = await socket.turn()
    finally:
        await socket.close()

    chunks = [m for m in messages if m["type"] == "chunk"]
    header, slices = chunks[0], chunks[1:]
    pcm_format = header["metadata"]["pcm_format"]
    assert header["audio_data"] is None and header["voice_text"] == "Hello there."
    assert pcm_format["channels"] == 1 and pcm_format["sample_width"] == 2
    assert len(slices) > 1 and all(s["text"] is None for s in slices)
    pcm = b"".join(base64.b64decode(s["audio_data"]) for s in slices)
    assert all(len(base64.b64decode(s["audio_data"])) == 4000 for s in slices[:-1])
    assert not pcm.startswith(b"RIFF") and len(pcm) > 4000


async def test_it_reports_voice_and_partial_text_when_asked(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    await heard_by_fake_stt(character, fake_llm, tts_provider=TTSProvider.NONE)
    fake_llm.script_audio(ScriptedReply(text="What is", repeat=10))
    socket = await Socket.open(app.url, api_key)
    try:
        await socket.start(user_id="u1", metadata={"send_voiced": True, "send_partial_text": True})
        spoken = utterance("What is the capital of France and why", after=1.0)
        said = int(spoken.end * 16000) * 2
        # The speech, faster than real time: heard as one backlog, it may all be scored before
        # a partial's transcription returns; the partial is there while the user still speaks.
        await socket.stream(spoken.pcm[:said])
        messages = await socket.until("info")
        await socket.stream(spoken.pcm[said:])
        messages += await socket.turn()
    finally:
        await socket.close()

    assert "voiced" in types(messages)
    infos = [m for m in messages if m["type"] == "info"]
    assert infos and infos[0]["metadata"] == {"partial_request_text": "What is"}
    assert types(messages).index("info") < types(messages).index("accepted")


async def test_it_lists_a_users_live_session(
    asgi_server: AsgiServer, character: Character, api_key: str
) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    socket = await Socket.open(asgi_server.url, api_key, session_id="live-1")
    async with httpx.AsyncClient(base_url=asgi_server.url, headers=headers) as client:
        try:
            await socket.start(user_id="ada", metadata={"device": "kiosk"})
            found = (await client.get("/ws/sessions", params={"user_id": "ada"})).json()
            other = (await client.get("/ws/sessions", params={"user_id": "bob"})).json()
            missing = await client.get("/ws/sessions")
            unauthorised = await client.get(
                "/ws/sessions?user_id=ada", headers={"Authorization": ""}
            )
        finally:
            await socket.close()

    assert found == {"session_id": "live-1", "data": {"metadata": {"device": "kiosk"}}}
    assert other == {"session_id": None}
    assert missing.status_code == 422 and unauthorised.status_code == 401


async def test_it_forgets_a_closed_session(
    asgi_server: AsgiServer, character: Character, api_key: str
) -> None:
    socket = await Socket.open(asgi_server.url, api_key, session_id="gone")
    await socket.start(user_id="ada")
    await socket.send("stop")
    await socket.connection.wait_closed()

    # The server deletes the row as it handles the close; wait for that to be visible.
    async def gone() -> bool:
        return not await LiveSession.objects.filter(session_id="gone").aexists()

    await wait_until_async(gone, "the closed session's row to go")
    assert await gone()


def test_an_idle_session_outlives_the_channel_layers_poll() -> None:
    """Each consumer waits on the channel layer in blocking reads of `brpop_timeout` seconds;
    a Redis socket timeout no longer than one read (redis-py 8's default, 5 s, is exactly
    that) killed every socket left idle for one read."""
    layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]

    assert RedisChannelLayer.brpop_timeout < settings.CHANNEL_LAYER_SOCKET_TIMEOUT
    if layer["BACKEND"] == "channels_app.layers.OutageTolerantRedisChannelLayer":  # REDIS_URL set
        hosts = RedisChannelLayer(**layer["CONFIG"]).hosts
        assert [host["socket_timeout"] for host in hosts] == [settings.CHANNEL_LAYER_SOCKET_TIMEOUT]
