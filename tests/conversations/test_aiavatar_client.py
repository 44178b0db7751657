"""AIAvatarKit's own HTTP client (the `aiavatar` package, unmodified) against our `/chat`."""

from __future__ import annotations

import asyncio
import types

import httpx
import pytest
from aiavatar.adapter import AIAvatarException, AIAvatarRequest, AIAvatarResponse
from aiavatar.adapter.http.client import AIAvatarHttpClient
from aiavatar.sts.vad import StandardSpeechDetector

from characters.models import Character
from conversations.models import TurnRecord
from tests.conftest import AsgiServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

pytestmark = pytest.mark.django_db(transaction=True)

# No sound card here: the client only needs the device description, not a device.
HEADLESS_AUDIO = types.SimpleNamespace(
    input_device=-1,
    output_device=-1,
    input_device_info={"name": "none"},
    output_device_info={"name": "none"},
)


def make_client(url: str, api_key: str) -> AIAvatarHttpClient:
    return AIAvatarHttpClient(
        url=f"{url}/chat",
        api_key=api_key,
        timeout=30,
        audio_devices=HEADLESS_AUDIO,
        vad=StandardSpeechDetector(volume_db_threshold=-40.0),
    )


async def turn(client: AIAvatarHttpClient, **fields: object) -> list[AIAvatarResponse]:
    """Send one request and collect what the client queued, start to final."""
    await client.send_request(
        AIAvatarRequest(type="start", session_id="ak", user_id="ak-user", **fields)
    )
    responses = []
    while not client.response_queue.empty():
        responses.append(client.response_queue.get_nowait())
    return responses


async def test_it_holds_a_two_turn_conversation(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text="[face:joy]Hello! Nice to meet you."))
    client = make_client(asgi_server.url, api_key)
    try:
        first = await turn(client, text="Hi, I am Ada")
        context_id = first[0].context_id
        second = await turn(client, text="Who am I?", context_id=context_id)
    finally:
        await client.http_client.aclose()

    assert first[0].type == "start" and first[-1].type == "final"
    chunk = next(r for r in first if r.type == "chunk" and r.text.startswith("[face:joy]"))
    assert chunk.avatar_control_request.face_name == "joy"
    assert chunk.voice_text == "Hello!"
    assert first[-1].text == "[face:joy]Hello! Nice to meet you."
    assert second[0].context_id == context_id
    assert second[-1].text == "You said: Who am I?. I have seen 2 user messages."
    # One transaction per turn, on each of its responses, naming the turn's record.
    transactions = [{r.transaction_id for r in responses} for responses in (first, second)]
    assert all(len(ids) == 1 and None not in ids for ids in transactions)
    assert transactions[0] != transactions[1]
    assert await TurnRecord.objects.filter(id=first[-1].transaction_id).aexists()


async def test_it_raises_the_servers_error_message(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(status=500, repeat=2))
    client = make_client(asgi_server.url, api_key)
    try:
        with pytest.raises(AIAvatarException, match="LLM provider returned HTTP 500"):
            await turn(client, text="Hello")
    finally:
        await client.http_client.aclose()


async def test_it_sees_a_wrong_key_as_an_http_error(
    asgi_server: AsgiServer, character: Character
) -> None:
    client = make_client(asgi_server.url, "ak_wrong")
    try:
        with pytest.raises(httpx.HTTPStatusError) as excinfo:
            await asyncio.wait_for(turn(client, text="Hello"), 30)
    finally:
        await client.http_client.aclose()

    assert excinfo.value.response.status_code == 401
