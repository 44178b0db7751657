"""How /ws takes microphone audio (docs/wire-protocols.md#realtime-voice-ws): AIAvatarKit's
base64 `data` messages and, as an additive option, binary frames of raw PCM16LE samples; and
the consumer's dispatch, which lets audio frames skip Django's per-message connection
housekeeping while the turns they start still get working connections. In process (Channels'
communicator), with the real Silero VAD and the fake OpenAI server's speech-to-text."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from channels_app.database import refresh_connections
from characters.models import Character
from conversations.models import Message, TurnRecord
from conversations.speech.models import STTProvider, VoiceSettings
from tests.conftest import LLM_KEY_VARIABLE
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp
from tests.realtime.ws import Socket, types
from tests.speech.audio import silence, utterance

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def heard_by_fake(character: Character, fake_llm: FakeOpenAI) -> FakeOpenAI:
    """The character hears through the fake's transcription endpoint."""
    await sync_to_async(VoiceSettings.objects.create)(
        character=character,
        stt_provider=STTProvider.OPENAI,
        stt_base_url=fake_llm.base_url,
        stt_api_key_env=LLM_KEY_VARIABLE,
    )
    return fake_llm


@sync_to_async
def history() -> list[str]:
    return list(Message.objects.order_by("context", "position").values_list("content", flat=True))


async def spoken_turn(app: InProcessApp, api_key: str, *, binary: bool) -> list[dict]:
    socket = await Socket.open(app.url, api_key)
    try:
        await socket.start(user_id="u1")
        await socket.stream(utterance(after=1.0).pcm, binary=binary)
        return await socket.turn()
    finally:
        await socket.close()


async def test_binary_frames_make_the_same_voice_turn_as_base64_messages(
    app: InProcessApp, api_key: str, heard_by_fake: FakeOpenAI
) -> None:
    question = ScriptedReply(text="What is the capital of France?")
    heard_by_fake.script_audio(question, question)
    heard_by_fake.script(ScriptedReply(text="Paris."), ScriptedReply(text="Paris."))

    as_json = await spoken_turn(app, api_key, binary=False)
    as_binary = await spoken_turn(app, api_key, binary=True)

    assert types(as_json) == types(as_binary) == ["accepted", "stop", "start", "chunk", "final"]
    sent = heard_by_fake.audio_requests
    assert len(sent) == 2 and sent[0]["data"] == sent[1]["data"]  # the same utterance, cut alike
    assert await history() == ["What is the capital of France?", "Paris."] * 2


async def test_it_explains_a_binary_frame_that_is_no_audio(
    app: InProcessApp, character: Character, api_key: str
) -> None:
    socket = await Socket.open(app.url, api_key)
    try:
        await socket.start(user_id="u1")
        await socket.connection.send(b"\x00\x01\x02")  # a sample and a half
        reply = await socket.expect("error")
        await socket.stream(silence(0.1), binary=True)  # the socket still listens
        await socket.send("invoke", text="Still there?")
        after = await socket.turn()
    finally:
        await socket.close()

    assert "data needs audio_data" in reply["metadata"]["error"]
    assert types(after)[-1] == "final"


async def test_it_wants_start_before_binary_audio(
    app: InProcessApp, character: Character, api_key: str
) -> None:
    socket = await Socket.open(app.url, api_key)
    try:
        await socket.connection.send(silence(0.032))
        reply = await socket.expect("error")
    finally:
        await socket.close()

    assert "Send a start message before anything else." in reply["metadata"]["error"]
    assert not await TurnRecord.objects.aexists()


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"audio_data": "AAA"}, "audio_data is not valid base64"),
        ({"audio_data": "AA=="}, "data needs audio_data"),  # one byte: half a sample
        ({"audio_data": "\udfff"}, "contains an unpaired UTF-16 surrogate"),
        ({"audio_data": 7}, "audio_data: Input should be a valid string"),
        ({"session_id": "other", "audio_data": "AAAA"}, "This socket carries session 'ws1'"),
    ],
)
async def test_usual_data_messages_with_bad_audio_get_the_general_explanation(
    app: InProcessApp, character: Character, api_key: str, fields: dict, error: str
) -> None:
    socket = await Socket.open(app.url, api_key)
    try:
        await socket.start(user_id="u1")
        await socket.connection.send(json.dumps({"type": "data", "session_id": "ws1", **fields}))
        reply = await socket.expect("error")
    finally:
        await socket.close()

    assert error in reply["metadata"]["error"]


def _break_the_database_connection() -> None:
    """Close the thread's connection under Django's feet, as a database restart or an idle
    timeout would: Django still holds it as open."""
    connection.ensure_connection()
    assert connection.connection is not None
    connection.connection.close()


async def test_a_spoken_turn_gets_a_fresh_connection_although_frames_skip_housekeeping(
    app: InProcessApp, api_key: str, heard_by_fake: FakeOpenAI
) -> None:
    heard_by_fake.script_audio(ScriptedReply(text="Hello?"))
    heard_by_fake.script(ScriptedReply(text="Hi."))
    socket = await Socket.open(app.url, api_key)
    try:
        await socket.start(user_id="u1")
        # The consumer's database work runs on the thread this does (asgiref's one thread for
        # thread-sensitive calls): its connection is gone before any frame arrives.
        await sync_to_async(_break_the_database_connection)()
        await socket.stream(utterance(after=1.0).pcm)
        messages = await socket.turn()
    finally:
        await socket.close()

    assert types(messages) == ["accepted", "stop", "start", "chunk", "final"]
    assert await history() == ["Hello?", "Hi."]


def test_the_sockets_housekeeping_keeps_a_working_connection_only_on_sqlite() -> None:
    connection.ensure_connection()
    working = connection.connection
    refresh_connections()
    if connection.vendor == "sqlite":  # a file opened anew costs more than a pooled session
        assert connection.connection is working
    else:  # handed back to the pool, as Django's end-of-request housekeeping does
        assert connection.connection is None

    _break_the_database_connection()
    refresh_connections()

    assert connection.connection is None
    assert TurnRecord.objects.count() == 0  # and the next query gets a working one
