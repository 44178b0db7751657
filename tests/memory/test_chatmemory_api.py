"""The ChatMemory API under /memory/, in process: shapes, filters, tenant walls, refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from avatarsite.tenants.models import Tenant
from characters.models import Character
from conversations.models import ApiKey
from memory.models import MemoryItem
from memory.tasks import index_pending
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp

pytestmark = pytest.mark.django_db


class Api:
    def __init__(self, key: str) -> None:
        self.client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")

    def post(self, path: str, body: Any = None, **query: Any) -> Any:
        url = f"/memory/{path}" + ("?" + "&".join(f"{k}={v}" for k, v in query.items()))
        return self.client.post(
            url, json.dumps(body) if body is not None else b"", "application/json"
        )

    def get(self, path: str, **query: Any) -> Any:
        return self.client.get(f"/memory/{path}", query)

    def delete(self, path: str, **query: Any) -> Any:
        return self.client.delete(
            f"/memory/{path}?" + "&".join(f"{k}={v}" for k, v in query.items())
        )


@pytest.fixture
def api(character: Character, api_key: str) -> Api:
    return Api(api_key)


def history(user: str, session: str, *pairs: tuple[str, str], **fields: Any) -> dict[str, Any]:
    messages = []
    for said, answer in pairs:
        messages += [{"role": "user", "content": said}, {"role": "assistant", "content": answer}]
    return {"user_id": user, "session_id": session, "messages": messages, **fields}


def test_history_round_trips_in_chatmemorys_shapes(api: Api) -> None:
    body = history("hana_mia", "s1", ("こんにちは", "こんにちは、ハナ！"), channel="line")
    assert api.post("history", body).json() == {"status": "ok"}
    api.post("history", history("hana_mia", "s2", ("Second", "Yes")))

    messages = api.get("history", user_id="hana_mia").json()["messages"]
    assert [(m["role"], m["content"], m["session_id"]) for m in messages] == [
        ("user", "こんにちは", "s1"),
        ("assistant", "こんにちは、ハナ！", "s1"),
        ("user", "Second", "s2"),
        ("assistant", "Yes", "s2"),
    ]
    assert messages[0]["channel"] == "line" and messages[2]["channel"] is None
    assert api.get("history", session_id="s2").json()["messages"][0]["content"] == "Second"
    assert api.get("history/session_ids", user_id="hana_mia").json() == {
        "session_ids": ["s1", "s2"]
    }
    sessions = api.get("history/sessions", user_id="hana_mia").json()["sessions"]
    assert [s["session_id"] for s in sessions] == ["s2", "s1"]
    # The client's id and the end user's id are one person.
    [turn, *_] = MemoryItem.objects.order_by("occurred_at")
    canonical = f"{turn.end_user_id}_mia"
    assert len(api.get("history", user_id=canonical).json()["messages"]) == 4

    assert api.delete("history", session_id="s1").json() == {"status": "history deleted"}
    assert api.get("history/session_ids", user_id="hana_mia").json()["session_ids"] == ["s2"]


def test_an_unfiltered_delete_is_refused_and_deletes_nothing(api: Api) -> None:
    api.post("history", history("hana_mia", "s1", ("hi", "hello")))
    api.post("diary", {"user_id": "mia", "diary_date": "2026-08-02", "content": "A day."})

    for path in ("history", "summary", "knowledge", "diary"):
        response = api.delete(path)
        assert response.status_code == 400, path
        assert response.json()["detail"].startswith("Give at least one of")
    assert MemoryItem.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"session_id": "s", "messages": []}, "user_id"),
        ({"user_id": "u", "session_id": "s", "messages": [{"role": "user"}]}, "messages"),
        ({"user_id": "u", "session_id": "s", "messages": "hello"}, "messages"),
        ({"user_id": "u\x00", "session_id": "s", "messages": []}, "user_id"),
        (
            {
                "user_id": "u",
                "session_id": "s",
                "messages": [{"role": "user", "content": "\ud800"}],
            },
            "messages",
        ),
        ([1, 2, 3], None),
    ],
)
def test_malformed_history_is_a_422_that_names_the_field(
    api: Api, body: Any, field: str | None
) -> None:
    response = api.post("history", body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail and all(error["loc"][0] == "body" for error in detail)
    if field:  # in the location, or (for unstorable text) in the message
        assert any(field in error["loc"] or f".{field}" in error["msg"] for error in detail)
    assert not MemoryItem.objects.exists()


def test_bad_bodies_and_parameters_everywhere_are_refused_cleanly(api: Api) -> None:
    assert api.client.post("/memory/search", b"{not json", "application/json").status_code == 422
    assert api.post("search", {"user_id": [], "query": "x"}).status_code == 422
    assert (
        api.post("search", {"user_id": "hana_mia", "query": "x", "top_k": 10**12}).status_code
        == 422
    )
    assert (
        api.post("search", {"user_id": "u", "query": "x", "since": "yesterday"}).status_code == 422
    )
    assert (
        api.post("search", {"user_id": "u", "query": "x", "utc_offset_hours": 1e308}).status_code
        == 422
    )
    assert (
        api.post("diary", {"user_id": "mia", "diary_date": "2026-13-01", "content": ""}).status_code
        == 422
    )
    assert api.get("history", user_id="u", within_seconds="-5").status_code == 422
    assert api.get("history", user_id="u", since="not a date").status_code == 422
    assert api.get("diary", user_id="mia", limit="many").status_code == 422
    response = api.get("history")
    assert response.status_code == 400 and "user_id" in response.json()["detail"]
    assert api.client.put("/memory/history").status_code == 405
    assert api.delete("knowledge", user_id="hana_mia", knowledge_id="nope").status_code == 200


def test_it_needs_a_key_and_sees_only_its_tenants_memories(
    api: Api, character: Character, globex_character: Character
) -> None:
    api.post("history", history("hana_mia", "s1", ("My secret is 42.", "OK")))
    foreign = Api(ApiKey.issue("globex", Tenant.named("globex"))[1])

    anonymous = Client().get("/memory/history", {"user_id": "hana_mia"})
    assert anonymous.status_code == 401 and anonymous.json() == {
        "detail": "Invalid or missing API Key"
    }
    assert foreign.get("history", user_id="hana_mia").json() == {"messages": []}
    canonical = MemoryItem.objects.get().key
    assert foreign.get("history", user_id=canonical).json() == {"messages": []}
    assert foreign.get("history", session_id="s1").json() == {"messages": []}
    result = foreign.post("search", {"user_id": [canonical, "hana_mia"], "query": "secret"})
    assert "42" not in json.dumps(result.json())
    foreign.delete("history", session_id="s1")
    assert MemoryItem.objects.count() == 1


def test_a_key_limited_to_a_character_reaches_only_its_memories(
    api: Api, character: Character
) -> None:
    other = Character.objects.create(slug="rin", name="Rin", tenant=character.tenant)
    limited_key, raw = ApiKey.issue("limited")
    limited_key.characters.set([other])
    limited = Api(raw)
    api.post("history", history("hana_mia", "s1", ("About Mia", "yes")))

    assert limited.get("history", user_id="hana_mia").status_code == 404
    assert limited.get("history", session_id="s1").json() == {"messages": []}
    assert limited.post("history", history("hana_mia", "s9", ("x", "y"))).status_code == 404
    assert limited.post("history", history("hana_rin", "s9", ("x", "y"))).status_code == 200
    assert limited.post("history", history("opaque-key", "s9", ("x", "y"))).status_code == 404


def test_knowledge_and_diaries(api: Api) -> None:
    assert api.post("knowledge", {"user_id": "hana_mia", "knowledge": "Likes matcha."}).json() == {
        "status": "knowledge added"
    }
    [known] = api.get("knowledge", user_id="hana_mia").json()["knowledge"]
    assert known["knowledge"] == "Likes matcha." and known["user_id"].endswith("_mia")
    api.delete("knowledge", user_id="hana_mia", knowledge_id=known["id"])
    assert api.get("knowledge", user_id="hana_mia").json() == {"knowledge": []}

    for content in ("Rainy day.", "Rainy day, then a rainbow."):
        body = {"user_id": "mia", "diary_date": "2026-08-02", "content": content}
        assert api.post("diary", body).json() == {"status": "diary upserted"}
    api.post("diary", {"user_id": "mia", "diary_date": "2026-08-05", "content": "Sunny."})
    diaries = api.get("diary", user_id="mia").json()["diaries"]
    assert [(d["diary_date"], d["content"]) for d in diaries] == [
        ("2026-08-05", "Sunny."),
        ("2026-08-02", "Rainy day, then a rainbow."),
    ]
    assert len(api.get("diary", since="2026-08-03", until="2026-08-06").json()["diaries"]) == 1
    api.delete("diary", user_id="mia", diary_date="2026-08-02")
    assert [d["content"] for d in api.get("diary", user_id="mia").json()["diaries"]] == ["Sunny."]


def test_search_windows_by_local_dates_and_returns_data_on_request(api: Api) -> None:
    def said(text: str, at: str) -> None:
        message = {"role": "user", "content": text, "created_at": at}
        api.post("history", {"user_id": "hana_mia", "session_id": at, "messages": [message]})

    said("fireworks before", "2026-08-01T14:59:00Z")
    said("fireworks during", "2026-08-01T15:00:00Z")
    said("fireworks after", "2026-08-02T15:00:00Z")
    api.post("diary", {"user_id": "mia", "diary_date": "2026-08-02", "content": "fireworks!"})
    index_pending()

    body = {
        "user_id": "hana_mia",
        "query": "fireworks",
        "since": "2026-08-02",
        "until": "2026-08-02",
        "utc_offset_hours": 9,
    }
    result = api.post("search", body).json()["result"]
    assert set(result["answer"].splitlines()) == {
        "Conversation (2026-08-02 00:00): User: fireworks during",
        "Diary (2026-08-02): fireworks!",
    }
    assert result["retrieved_data"] is None
    with_data = api.post("search", {**body, "include_retrieved_data": True}).json()["result"]
    assert with_data["retrieved_data"].startswith("====\n\n")
    empty = api.post("search", {"user_id": "nobody_mia", "query": "fireworks"}).json()
    assert empty == {
        "result": {"answer": "Nothing relevant is remembered.", "retrieved_data": None}
    }


def test_summary_create_get_and_delete(app: InProcessApp, api: Api, fake_llm: FakeOpenAI) -> None:
    api.post("history", history("hana_mia", "s1", ("I adopted a dog called Pochi.", "Lovely!")))
    api.post("history", history("hana_mia", "s2", ("Now something else.", "Sure.")))
    fake_llm.script(
        ScriptedReply(
            text='{"summary": "Hana adopted Pochi.", "facts": '
            '[{"subject": "pet name", "fact": "Her dog is Pochi."}]}'
        )
    )

    # Without a session: every session but the current (latest) one.
    assert api.post("summary/create", user_id="hana_mia").json() == {"status": "summary created"}
    [summary] = api.get("summary", user_id="hana_mia").json()["summaries"]
    assert (summary["session_id"], summary["summary"]) == ("s1", "Hana adopted Pochi.")
    assert summary["created_at"].endswith("+00:00")
    [fact] = api.get("knowledge", user_id="hana_mia").json()["knowledge"]
    assert fact["knowledge"] == "Her dog is Pochi."
    assert api.post("summary/create", user_id="mia").status_code == 400  # a diary key
    assert api.delete("summary", session_id="s1").json() == {"status": "summaries deleted"}
    assert api.get("summary", user_id="hana_mia").json() == {"summaries": []}
