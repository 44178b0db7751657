"""What /ws does with bad input and with clients that vanish: a clear `error` message or a
clean close, no leaked task, no partial history. Bad input is tested in process (Channels'
communicator); a client that drops its connection needs a real server."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings

from channels_app.models import LiveSession
from characters.models import Character
from conversations.models import Message, TurnRecord
from tests.conftest import LLM_KEY_VARIABLE, AsgiServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp
from tests.realtime.inprocess_ws import connect
from tests.realtime.ws import Socket
from tests.waiting import wait_until_async

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = ScriptedReply(chunks=["One. ", "Two. ", "Three. ", "Four."], chunk_delay=1.0)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ('{"type": "dance", "session_id": "ws1"}', "Unknown message type 'dance'"),
        ("{not json", "Message is not valid JSON."),
        ('["start"]', "Message must be a JSON object."),
        ('{"type": "start"}', "session_id is required."),
        ('{"type": "data", "session_id": "ws1", "audio_data": "AAAA"}', "Send a start message"),
        ('{"type": "invoke", "session_id": "ws1", "text": "hi"}', "Send a start message"),
        ('{"session_id": "ws1"}', "type: Field required"),
        ('{"type": "start", "session_id": "\\udfff"}', "message.session_id: contains an unpaired"),
        ('{"type": "start", "session_id": "ws1", "text": "a\\u0000"}', "contains a NUL"),
        ('{"type": "start", "session_id": "ws1", "\\ud800": 1}', "message: a key contains"),
        ('{"type": "start", "session_id": "' + "s" * 201 + '"}', "at most 200 characters"),
        (
            '{"type": "start", "session_id": "ws1", "metadata": {"response_audio_chunk_size": 1}}',
            "response_audio_chunk_size must be 0",
        ),
    ],
)
async def test_it_explains_a_bad_message_and_stays_open(
    app: InProcessApp, character: Character, api_key: str, message: str, error: str
) -> None:
    socket = await Socket.open(app.url, api_key)
    try:
        await socket.connection.send(message)
        reply = await socket.expect("error")
        connected = await socket.start(user_id="u1")
    finally:
        await socket.close()

    assert error in reply["metadata"]["error"]
    assert connected["session_id"] == "ws1"


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"type": "data", "audio_data": "not base64!"}, "audio_data is not valid base64"),
        ({"type": "data", "audio_data": "AA=="}, "data needs audio_data"),
        ({"type": "data"}, "data needs audio_data"),
        ({"type": "invoke"}, "invoke needs text or audio_data"),
        ({"type": "invoke", "audio_data": "AA=="}, "even number of bytes"),
        ({"type": "invoke", "text": "hi", "context_id": "mine"}, "context_id must be a UUID"),
        ({"type": "invoke", "session_id": "other", "text": "hi"}, "carries session 'ws1'"),
    ],
)
async def test_it_explains_bad_fields_after_start(
    app: InProcessApp, character: Character, api_key: str, fields: dict, error: str
) -> None:
    socket = await Socket.open(app.url, api_key)
    try:
        await socket.start(user_id="u1")
        await socket.connection.send(json.dumps({"session_id": "ws1", **fields}))
        reply = await socket.expect("error")
    finally:
        await socket.close()

    assert error in reply["metadata"]["error"]
    assert not await TurnRecord.objects.aexists()


async def test_it_closes_on_an_oversized_frame(
    app: InProcessApp, character: Character, api_key: str
) -> None:
    socket = await Socket.open(app.url, api_key)
    try:
        await socket.start(user_id="u1")
        await socket.connection.send("x" * (settings.REALTIME_MAX_MESSAGE_BYTES + 1))
        reply = await socket.expect("error")
        await socket.connection.wait_closed()
    finally:
        await socket.close()

    assert "larger than" in reply["metadata"]["error"]
    assert socket.connection.close_code == 4009


async def test_a_client_vanishing_mid_answer_leaves_no_history(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(SLOW)
    socket = await Socket.open(asgi_server.url, api_key, session_id="vanishing")
    await socket.start(user_id="u1")
    await socket.send("invoke", text="Tell me a long story")
    await socket.until("chunk")
    socket.connection.transport.abort()  # no close handshake: the client is simply gone

    async def settled() -> bool:
        gone = not await LiveSession.objects.filter(session_id="vanishing").aexists()
        return gone and await TurnRecord.objects.aexists()

    # The server records the turn, then deletes the session's row, as it handles the drop.
    await wait_until_async(settled, "the turn's record and the session's row to go")
    assert [r.status async for r in TurnRecord.objects.all()] == ["interrupted"]
    assert not await Message.objects.aexists()
    assert not await LiveSession.objects.filter(session_id="vanishing").aexists()


async def _receive_until(communicator: WebsocketCommunicator, type_: str) -> None:
    while (await communicator.receive_json_from(timeout=30))["type"] != type_:
        pass


async def test_a_vanished_client_leaves_no_task_behind(
    character: Character, api_key: str, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In this process, with Channels' communicator, so the event loop's tasks can be counted."""
    monkeypatch.setenv(LLM_KEY_VARIABLE, fake_llm.api_key)
    # One full session first: the process-wide helpers (interrupt listener, VAD) start once.
    warm = await connect(api_key, "warm")
    await warm.send_json_to({"type": "invoke", "session_id": "warm", "text": "Hi"})
    await _receive_until(warm, "final")
    await warm.disconnect(timeout=30)
    baseline = len(asyncio.all_tasks())

    fake_llm.script(SLOW)
    communicator = await connect(api_key, "leaky")
    await communicator.send_json_to({"type": "invoke", "session_id": "leaky", "text": "Story"})
    await _receive_until(communicator, "chunk")
    await communicator.disconnect(timeout=30)

    for _ in range(100):
        if len(asyncio.all_tasks()) <= baseline:
            break
        await asyncio.sleep(0.05)
    assert len(asyncio.all_tasks()) <= baseline, asyncio.all_tasks()
    statuses = [s async for s in TurnRecord.objects.values_list("status", flat=True)]
    assert sorted(statuses) == ["completed", "interrupted"]
    assert await Message.objects.acount() == 2  # the warm-up turn only
