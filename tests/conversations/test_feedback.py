"""End users' feedback through AIAvatarKit's protocol (`POST /feedback`, naming the answer by
the `transaction_id` its responses carried), kept on the turn record like Dify's, and listed
and filtered for operators in the admin."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from avatarsite.tenants.models import Membership, Tenant
from characters.models import Character
from conversations.models import ApiKey, TurnRecord
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.inprocess import InProcessApp

pytestmark = pytest.mark.django_db


def send(key: str, body: Any, path: str = "/feedback") -> tuple[int, Any]:
    response = Client().post(
        path,
        json.dumps(body) if not isinstance(body, bytes) else body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )
    return response.status_code, response.json()


def talk(app: InProcessApp, key: str, user: str | None, text: str = "Hi") -> str:
    body: dict[str, Any] = {"type": "start", "session_id": "s1", "text": text}
    if user:
        body["user_id"] = user
    result = app.post_sse("/chat", body, key=key)
    assert result.types[-1] == "final"
    transaction_id: str = result.events[-1]["transaction_id"]
    return transaction_id


def test_an_end_user_likes_or_dislikes_their_own_answer(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    mine = talk(app, api_key, "u1")
    anonymous = talk(app, api_key, None)  # named by its session on /chat

    liked = send(
        api_key, {"transaction_id": mine, "user_id": "u1", "rating": "like", "comment": "良い!"}
    )
    disliked = send(api_key, {"transaction_id": anonymous, "session_id": "s1", "rating": "dislike"})

    assert liked == (200, {"transaction_id": mine, "rating": "like", "comment": "良い!"})
    assert disliked[0] == 200
    record = TurnRecord.objects.get(id=mine)
    assert (record.feedback_rating, record.feedback_content) == ("like", "良い!")
    assert record.feedback_at is not None
    assert TurnRecord.objects.get(id=anonymous).feedback_rating == "dislike"
    # Neither rating nor comment withdraws it.
    assert send(api_key, {"transaction_id": mine, "user_id": "u1"})[0] == 200
    record.refresh_from_db()
    assert (record.feedback_rating, record.feedback_at) == ("", None)


def test_another_users_or_tenants_answer_is_as_unknown_as_a_made_up_one(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    mine = talk(app, api_key, "u1")
    _, globex_key = ApiKey.issue("globex", Tenant.named("globex"))
    Character.objects.create(tenant=Tenant.named("globex"), slug="kai", name="Kai", is_default=True)

    answers = [
        send(api_key, {"transaction_id": mine, "user_id": "u2", "rating": "like"}),
        send(api_key, {"transaction_id": str(uuid.uuid4()), "user_id": "u1", "rating": "like"}),
        send(api_key, {"transaction_id": "not-an-id", "user_id": "u1", "rating": "like"}),
        send(globex_key, {"transaction_id": mine, "user_id": "u1", "rating": "like"}),
    ]

    assert {json.dumps(a) for a in answers} == {
        json.dumps((404, {"detail": "Unknown transaction_id."}))
    }
    assert TurnRecord.objects.get(id=mine).feedback_rating == ""


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"transaction_id": "x", "user_id": "u1", "rating": "meh"}, 422),
        ({"user_id": "u1", "rating": "like"}, 422),
        ({"transaction_id": "x", "rating": "like"}, 400),
        ({"transaction_id": "x", "user_id": "u1", "comment": "a" * 4001}, 422),
        (b'{"transaction_id": "x", "user_id": "u1", "comment": "\\u0000"}', 422),
        (b'{"transaction_id": "x", "user_id": "u1", "comment": "\\ud800"}', 422),
        (b"[1, 2", 422),
    ],
    ids=["rating", "no-id", "no-user", "long", "nul", "surrogate", "not-json"],
)
def test_bad_feedback_is_refused_in_aiavatarkits_shape(
    character: Character, api_key: str, body: Any, status: int
) -> None:
    code, answer = send(api_key, body)

    assert code == status
    assert isinstance(answer.get("detail", answer.get("error")), list | str)


def test_it_refuses_a_missing_key_before_reading_the_body(character: Character) -> None:
    assert send("nope", b"[1, 2")[0] == 401


def test_operators_list_and_filter_feedback(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    fake_llm.script(*[ScriptedReply(text=t) for t in ("Good.", "Bad.", "Plain.")])
    good, bad, _ = (talk(app, api_key, "u1", text) for text in ("one", "two", "three"))
    send(api_key, {"transaction_id": good, "user_id": "u1", "rating": "like"})
    send(api_key, {"transaction_id": bad, "user_id": "u1", "rating": "dislike", "comment": "rude"})
    user = User.objects.create_user("ann", password="pw", is_staff=True)
    Membership.objects.create(user=user, tenant=character.tenant, role=Membership.Role.VIEWER)
    client = Client()
    client.force_login(user)
    other = User.objects.create_user("bob", password="pw", is_staff=True)
    Membership.objects.create(user=other, tenant=Tenant.named("globex"))
    outsider = Client()
    outsider.force_login(other)
    changelist = "/admin/conversations/turnrecord/"

    def listed(client: Client, query: str) -> list[str]:
        response = client.get(f"{changelist}?{query}")
        assert response.status_code == 200
        return [str(r.pk) for r in response.context["cl"].result_list]

    assert sorted(listed(client, "feedback=any")) == sorted([good, bad])
    assert listed(client, "feedback=like") == [good]
    assert listed(client, "feedback=comment") == [bad]
    assert listed(client, "q=rude") == [bad]
    assert (
        "<strong>Dislike</strong> rude"
        in client.get(f"{changelist}?feedback=dislike").content.decode()
    )
    assert listed(outsider, "feedback=any") == []
