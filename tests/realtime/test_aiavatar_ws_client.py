"""AIAvatarKit's own WebSocket client (the `aiavatar` package, unmodified) against our /ws."""

from __future__ import annotations

import asyncio
import base64

import pytest
import websockets

from characters.models import Character
from tests.conftest import AsgiServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.realtime.ws import TIMEOUT, ws_url
from tests.speech.audio import require_local_stt, utterance

# First: that module lets aiavatar import without torch (it needs it only for its own VAD).
from tests.conversations.test_aiavatar_client import HEADLESS_AUDIO  # isort: skip

from aiavatar.adapter import AIAvatarRequest, AIAvatarResponse
from aiavatar.adapter.websocket.client import AIAvatarWebSocketClient

pytestmark = pytest.mark.django_db(transaction=True)


async def next_response(client: AIAvatarWebSocketClient) -> AIAvatarResponse:
    return await asyncio.wait_for(client.response_queue.get(), TIMEOUT)


async def test_it_completes_a_voice_turn(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    require_local_stt()
    fake_llm.script(ScriptedReply(text="[face:joy]Paris! It is the capital of France."))
    client = AIAvatarWebSocketClient(
        url=ws_url(asgi_server.url), api_key=api_key, audio_devices=HEADLESS_AUDIO
    )
    # What start_listening does, minus the microphone and the speaker.
    client.websocket_connection = await websockets.connect(
        client.url, additional_headers={"Authorization": f"Bearer {client.api_key}"}
    )
    receiver = asyncio.create_task(client.receive_websocket_worker())
    responses: list[AIAvatarResponse] = []
    try:
        await client.initialize_session("ak-session", "ak-user", None)
        responses.append(await next_response(client))
        audio = base64.b64encode(utterance().pcm).decode()
        await client.send_request(
            AIAvatarRequest(
                type="invoke", session_id="ak-session", user_id="ak-user", audio_data=audio
            )
        )
        while responses[-1].type != "final":
            responses.append(await next_response(client))
    finally:
        receiver.cancel()
        await asyncio.gather(receiver, return_exceptions=True)
        await client.websocket_connection.close()

    assert [r.type for r in responses[:4]] == ["connected", "accepted", "stop", "start"]
    assert responses[0].session_id == "ak-session" and responses[0].user_id == "ak-user"
    assert "capital of france" in responses[3].metadata["recognized_text"].lower()
    chunks = [r for r in responses if r.type == "chunk"]
    assert chunks[0].avatar_control_request.face_name == "joy"
    # The client decoded each chunk's base64 itself: a complete WAV file per sentence.
    assert all(c.audio_data[:4] == b"RIFF" for c in chunks)
    assert responses[-1].voice_text.startswith("Paris!")
    # The turn's id from `accepted` to `final`, as AIAvatarKit's transaction_id.
    turn_ids = {r.transaction_id for r in responses[1:] if r.type != "stop"}
    assert len(turn_ids) == 1 and None not in turn_ids
