"""Dify's app API beside /chat-messages, walked with the `dify-client` SDK against the live
server (its generic `_send_request` for routes the SDK has no method for)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from dify_client import ChatClient

from avatarsite.tenants.models import Tenant
from characters.models import Character
from conversations.models import ApiKey, Context, TurnRecord
from tests.conftest import AsgiServer
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

pytestmark = pytest.mark.django_db(transaction=True)


def dify(server: AsgiServer, key: str) -> ChatClient:
    sdk = ChatClient(key)
    sdk.base_url = f"{server.url}/v1"
    return sdk


def ask(sdk: ChatClient, query: str, user: str = "u1", **fields: Any) -> dict[str, Any]:
    response = sdk.create_chat_message(fields.pop("inputs", {}), query, user, **fields)
    assert response.status_code == 200, response.text
    return response.json()


def test_it_walks_a_conversation_through_every_route(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    character.persona = "You are Mia, talking to {username} about {topic}."
    character.greeting = "こんにちは!"
    character.save()
    sdk = dify(asgi_server, api_key)

    parameters = sdk.get_application_parameters("u1").json()
    info = sdk._send_request("GET", "/info", params={"user": "u1"}).json()
    meta = sdk._send_request("GET", "/meta", params={"user": "u1"}).json()
    first = ask(sdk, "one", inputs={"topic": "tea"})
    conversation_id = first["conversation_id"]
    second = ask(sdk, "two", conversation_id=conversation_id, inputs={"topic": "ignored"})
    third = ask(sdk, "three", conversation_id=conversation_id)
    other = ask(sdk, "another conversation")

    assert parameters["opening_statement"] == "こんにちは!"
    assert parameters["user_input_form"] == [
        {"text-input": {"label": "topic", "variable": "topic", "required": False, "default": ""}}
    ]
    assert (info["name"], info["mode"]) == ("Mia", "chat")
    assert meta == {"tool_icons": {}}
    # The conversation keeps the inputs it started with.
    assert "about tea" in fake_llm.requests[1]["messages"][0]["content"]

    newest = sdk.get_conversations("u1", limit=1).json()
    older = sdk.get_conversations("u1", last_id=newest["data"][0]["id"], limit=1).json()
    assert (newest["has_more"], older["has_more"]) == (True, False)
    assert [newest["data"][0]["id"], older["data"][0]["id"]] == [
        other["conversation_id"],
        conversation_id,
    ]
    assert older["data"][0]["inputs"] == {"topic": "tea"}

    renamed = sdk.rename_conversation(conversation_id, "お茶の話", "u1").json()
    assert renamed["name"] == "お茶の話"
    assert sdk.get_conversations("u1").json()["data"][1]["name"] == "お茶の話"

    latest = sdk.get_conversation_messages("u1", conversation_id, limit=2).json()
    earlier = sdk.get_conversation_messages(
        "u1", conversation_id, first_id=latest["data"][0]["id"], limit=2
    ).json()
    assert [m["query"] for m in latest["data"]] == ["two", "three"]
    assert [m["id"] for m in latest["data"]] == [second["message_id"], third["message_id"]]
    assert (latest["has_more"], earlier["has_more"]) == (True, False)
    assert [m["id"] for m in earlier["data"]] == [first["message_id"]]
    assert earlier["data"][0]["answer"] == first["answer"]

    rated = sdk.message_feedback(second["message_id"], "like", "u1")
    assert rated.json() == {"result": "success"}
    assert TurnRecord.objects.get(id=second["message_id"]).feedback_rating == "like"
    assert sdk.get_conversation_messages("u1", conversation_id).json()["data"][1]["feedback"] == {
        "rating": "like"
    }

    variables = sdk._send_request(
        "GET", f"/conversations/{conversation_id}/variables", params={"user": "u1"}
    ).json()
    assert [(v["name"], v["value"]) for v in variables["data"]] == [("topic", "tea")]
    updated = sdk._send_request(
        "PUT",
        f"/conversations/{conversation_id}/variables/topic",
        {"value": "紅茶", "user": "u1"},
    )
    assert updated.json()["value"] == "紅茶"
    ask(sdk, "four", conversation_id=conversation_id)
    assert "about 紅茶" in fake_llm.requests[-1]["messages"][0]["content"]

    deleted = sdk._send_request("DELETE", f"/conversations/{conversation_id}", {"user": "u1"})
    assert deleted.status_code == 204
    gone = sdk.get_conversation_messages("u1", conversation_id)
    assert (gone.status_code, gone.json()["code"]) == (404, "not_found")
    assert [c["id"] for c in sdk.get_conversations("u1").json()["data"]] == [
        other["conversation_id"]
    ]


def test_a_stopped_stream_ends_saying_it_was_interrupted(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(ScriptedReply(chunks=["First. ", "Second. ", "Third."], chunk_delay=0.5))
    sdk = dify(asgi_server, api_key)
    response = sdk.create_chat_message({}, "Hi", "u1", response_mode="streaming")
    events = (
        json.loads(line[5:])
        for line in response.iter_lines(decode_unicode=True)
        if line.startswith("data:")
    )
    started = next(e for e in events if e["event"] == "message")  # pings may come first

    foreign = sdk._send_request("POST", f"/chat-messages/{started['task_id']}/stop", {"user": "u2"})
    stopped = sdk._send_request("POST", f"/chat-messages/{started['task_id']}/stop", {"user": "u1"})
    rest = list(events)

    assert foreign.json() == stopped.json() == {"result": "success"}
    assert rest[-1]["event"] == "message_end"
    assert rest[-1]["metadata"] == {"interrupted": True}
    assert "Third." not in "".join(e.get("answer") or "" for e in rest)
    assert TurnRecord.objects.get(id=started["task_id"]).status == "interrupted"


def _refusal(response: Any) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["code"], body["message"]


def test_foreign_and_unknown_ids_answer_alike(
    asgi_server: AsgiServer, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    sdk = dify(asgi_server, api_key)
    mine = ask(sdk, "mine")
    other_tenant = Tenant.named("globex")
    Character.objects.create(
        tenant=other_tenant,
        slug="mia",
        name="Mia",
        persona="You are Mia.",
        llm_model="gpt-4o-mini",
        llm_base_url=fake_llm.base_url,
        llm_api_key_env=character.llm_api_key_env,
        is_default=True,
    )
    globex = dify(asgi_server, ApiKey.issue("globex", other_tenant)[1])
    made_up = str(uuid.uuid4())

    for client, user in ((sdk, "u2"), (globex, "u1")):
        for path, method in (
            ("/messages?conversation_id={}", "GET"),
            ("/conversations/{}/variables", "GET"),
            ("/conversations/{}/name", "POST"),
            ("/conversations/{}", "DELETE"),
        ):
            body = {"user": user, "name": "x"}
            params = {"user": user}
            foreign = client._send_request(
                method, path.format(mine["conversation_id"]), body, params
            )
            unknown = client._send_request(method, path.format(made_up), body, params)
            assert foreign.status_code == 404
            assert _refusal(foreign) == _refusal(unknown)
        feedback = client.message_feedback(mine["message_id"], "dislike", user)
        assert _refusal(feedback) == _refusal(client.message_feedback(made_up, "dislike", user))
        assert globex.get_conversations("u1").json()["data"] == []

    assert Context.objects.filter(id=mine["conversation_id"]).exists()
    assert TurnRecord.objects.get(id=mine["message_id"]).feedback_rating == ""


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/conversations", {}, 400),  # no user
        ("GET", "/conversations?user=u1&limit=0", {}, 400),
        ("GET", "/conversations?user=u1&limit=abc", {}, 400),
        ("GET", "/conversations?user=u1&last_id=bogus", {}, 404),
        ("GET", "/conversations?user=u1&sort_by=name", {}, 400),
        ("GET", "/messages?user=u1", {}, 400),  # no conversation_id
        ("GET", "/parameters?user=u%00", {}, 400),
        ("POST", "/messages/x/feedbacks", {"user": "u1", "rating": "meh"}, 400),
        ("POST", "/conversations/x/name", {"user": "u1"}, 404),
        ("PUT", "/conversations", {"user": "u1"}, 405),
    ],
)
def test_it_refuses_bad_requests_in_difys_error_shape(
    asgi_server: AsgiServer,
    character: Character,
    api_key: str,
    method: str,
    path: str,
    body: dict[str, Any],
    status: int,
) -> None:
    response = dify(asgi_server, api_key)._send_request(method, path, body or None)

    assert response.status_code == status
    assert set(response.json()) == {"status", "code", "message"}
    assert response.json()["status"] == status


def test_it_refuses_a_wrong_key(asgi_server: AsgiServer, character: Character) -> None:
    response = dify(asgi_server, "ak_wrong").get_conversations("u1")

    assert _refusal(response)[:2] == (401, "invalid_api_key")
