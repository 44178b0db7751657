"""`/chat-messages` through the `dify-client` package (requests-based), unchanged."""

from __future__ import annotations

import json
import uuid

import pytest
from dify_client import ChatClient

from characters.models import Character
from conversations.models import ChannelIdentity, Context, TurnRecord
from tests.conftest import AsgiServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

pytestmark = pytest.mark.django_db(transaction=True)


def dify(server: AsgiServer, key: str) -> ChatClient:
    sdk = ChatClient(key)
    sdk.base_url = f"{server.url}/v1"  # the SDK's own attribute for its API root
    return sdk


def stream_events(response, *, pings: bool = False) -> list[dict]:
    """The stream's events; pings (sent whenever the LLM is slower than the test interval,
    as on a loaded machine) only when asked for."""
    assert response.status_code == 200
    events = [
        json.loads(line[5:])
        for line in response.iter_lines(decode_unicode=True)
        if line and line.startswith("data:")
    ]
    return [e for e in events if pings or e["event"] != "ping"]


def test_it_streams_messages_and_continues_the_conversation(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(text="[face:joy]Hello! Nice to meet you."))
    sdk = dify(asgi_server, api_key)

    first = stream_events(sdk.create_chat_message({}, "Hi", "u1", response_mode="streaming"))
    conversation_id = first[0]["conversation_id"]
    second = stream_events(
        sdk.create_chat_message(
            {}, "Again", "u1", response_mode="streaming", conversation_id=conversation_id
        )
    )

    assert [e["event"] for e in first] == ["message", "message", "message_end"]
    assert [e["answer"] for e in first[:-1]] == ["[face:joy]Hello!", " Nice to meet you."]
    assert uuid.UUID(conversation_id)
    assert {e["message_id"] for e in first} == {first[0]["message_id"]}
    assert TurnRecord.objects.filter(id=first[0]["message_id"]).exists()
    assert first[0]["task_id"] == first[0]["id"] == first[0]["message_id"]
    assert set(first[-1]["metadata"]) == {"usage"}  # not interrupted
    assert {e["conversation_id"] for e in second} == {conversation_id}
    assert "".join(e["answer"] or "" for e in second).endswith("I have seen 2 user messages.")
    assert ChannelIdentity.objects.get().channel == "dify"


def test_it_answers_in_blocking_mode(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    response = dify(asgi_server, api_key).create_chat_message(
        {"name": "Ada"}, "Hi", "u1", response_mode="blocking"
    )

    body = response.json()
    assert response.status_code == 200
    assert (body["event"], body["mode"]) == ("message", "chat")
    assert body["answer"] == "You said: Hi. I have seen 1 user messages."
    assert str(Context.objects.get().id) == body["conversation_id"]


def test_it_streams_an_error_event_when_the_turn_fails(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(status=500, repeat=2))

    events = stream_events(
        dify(asgi_server, api_key).create_chat_message({}, "Hi", "u1", response_mode="streaming")
    )

    assert events[-1]["event"] == "error"
    assert (events[-1]["status"], events[-1]["code"]) == (500, "internal_error")
    assert "LLM provider returned HTTP 500" in events[-1]["message"]
    assert not Context.objects.exists()


def test_it_sends_ping_events_while_the_llm_is_quiet(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(chunks=["Slow ", "reply."], chunk_delay=0.8))

    events = stream_events(
        dify(asgi_server, api_key).create_chat_message({}, "Hi", "u1", response_mode="streaming"),
        pings=True,
    )

    assert {"event": "ping"} in events
    assert events[-1]["event"] == "message_end"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"query": "Hi", "inputs": {}}, 400, "invalid_param"),  # no user
        ({"query": "Hi", "user": "u1", "inputs": {"n": 1}}, 400, "invalid_param"),
        ({"query": "Hi", "user": "u1", "response_mode": "psychic"}, 400, "invalid_param"),
        ({"query": "Hi", "user": "u1", "conversation_id": str(uuid.uuid4())}, 404, "not_found"),
        ({"query": "Hi", "user": "u1", "conversation_id": "bogus"}, 404, "not_found"),
    ],
    ids=["no-user", "non-string-input", "bad-mode", "unknown-conversation", "not-a-uuid"],
)
def test_it_refuses_bad_requests_in_difys_error_shape(
    asgi_server: AsgiServer,
    character: Character,
    api_key: str,
    body: dict,
    status: int,
    code: str,
) -> None:
    response = dify(asgi_server, api_key)._send_request("POST", "/chat-messages", body)

    assert response.status_code == status
    assert response.json()["code"] == code and response.json()["message"]
    assert not TurnRecord.objects.exists()


def test_it_refuses_a_wrong_key(asgi_server: AsgiServer, character: Character) -> None:
    response = dify(asgi_server, "ak_wrong").create_chat_message({}, "Hi", "u1")

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"
