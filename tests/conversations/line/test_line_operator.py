"""Operators writing to LINE chats: the push API, the character speaking first, the admin."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import httpx
import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from conversations.line.models import LineChannel
from conversations.models import ChannelIdentity, EndUser, TurnRecord
from tests.conversations.line.conftest import LineStack
from tests.fakes.line_server import FakeLine, user_id
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def push(
    stack: LineStack, body: Mapping[str, object], key: str | None, action: str = "push"
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{stack.url}/line/mia/{action}", json=body, headers=headers, timeout=10)


def test_it_pushes_an_operators_text_exactly_as_written(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine, api_key: str
) -> None:
    text = "[face:joy] Maintenance tonight <b>22:00</b>."

    response = push(line_stack, {"to": user_id(3), "text": text}, api_key)

    assert response.status_code == 200
    assert response.json() == {"result": "sent", "to": user_id(3), "how": "pushed 1 request(s)"}
    [call] = fake_line.calls.pushes()
    assert call.body["messages"] == [{"type": "text", "text": text}]


def test_it_pushes_to_an_end_user_by_id(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine, api_key: str
) -> None:
    end_user = EndUser.objects.create()
    ChannelIdentity.objects.create(channel="line", external_id=user_id(4), end_user=end_user)

    response = push(line_stack, {"end_user_id": str(end_user.id), "text": "Hi"}, api_key)

    assert response.status_code == 200
    assert fake_line.calls.pushes()[0].body["to"] == user_id(4)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"text": "no target"}, 422),
        ({"to": "not-a-line-id", "text": "x"}, 422),
        (
            {"to": user_id(), "end_user_id": "8c5a3f5e-8f2d-4a57-9a3e-1b2c3d4e5f60", "text": "x"},
            422,
        ),
        ({"to": user_id(), "text": ""}, 422),
        ({"to": user_id(), "text": "x" * 5001}, 422),
        ({"to": user_id(), "text": "x", "extra": 1}, 422),
        ({"end_user_id": "8c5a3f5e-8f2d-4a57-9a3e-1b2c3d4e5f60", "text": "x"}, 404),
    ],
)
def test_it_rejects_bad_push_requests_with_a_clear_error(
    line_stack: LineStack,
    line_channel: LineChannel,
    fake_line: FakeLine,
    api_key: str,
    body: dict[str, object],
    status: int,
) -> None:
    response = push(line_stack, body, api_key)

    assert response.status_code == status
    assert response.json()["detail"]
    assert fake_line.calls == []


def test_it_requires_an_api_key_or_a_staff_session(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine
) -> None:
    body = {"to": user_id(), "text": "x"}

    assert push(line_stack, body, None).status_code == 401
    assert push(line_stack, body, "ak_wrong").json() == {"detail": "Invalid or missing API Key"}
    assert push(line_stack, body, None, action="start").status_code == 401
    assert fake_line.calls == []


def test_it_reports_lines_refusal(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine, api_key: str
) -> None:
    fake_line.fail("/v2/bot/message/push", 400)

    response = push(line_stack, {"to": user_id(), "text": "x"}, api_key)

    assert response.status_code == 502
    assert response.json() == {"detail": "LINE API answered 400: Injected failure 400"}


def test_it_lets_the_character_start_a_conversation(
    line_stack: LineStack,
    line_channel: LineChannel,
    fake_line: FakeLine,
    fake_llm: FakeOpenAI,
    api_key: str,
) -> None:
    fake_llm.script(ScriptedReply(text="[face:joy]Good morning! Did you sleep well?"))
    instruction = "Greet the user for the morning and ask how they slept."

    response = push(line_stack, {"to": user_id(5), "instruction": instruction}, api_key, "start")

    assert response.status_code == 202
    assert response.json()["result"] == "accepted"
    calls = fake_line.wait_for(lambda calls: len(calls.pushes()) == 1)
    assert calls.pushes()[0].texts == ["Good morning! Did you sleep well?"]
    assert calls.loadings() == []
    assert fake_llm.requests[-1]["messages"][-1]["content"] == instruction
    wait_until(lambda: TurnRecord.objects.filter(channel="line").exists(), "the turn record")
    assert ChannelIdentity.objects.filter(channel="line", external_id=user_id(5)).exists()


@contextlib.contextmanager
def staff_browser(stack: LineStack) -> Iterator[httpx.Client]:
    """A staff member logged in to the admin of the running server."""
    User.objects.create_superuser("op", "op@example.com", "pw")
    with httpx.Client(base_url=stack.url, timeout=10) as browser:
        browser.get("/admin/login/")
        login = browser.post(
            "/admin/login/",
            data={"username": "op", "password": "pw", "csrfmiddlewaretoken": csrf(browser)},
        )
        assert login.status_code == 302
        yield browser


def csrf(browser: httpx.Client) -> str:
    return browser.cookies["csrftoken"]


def test_staff_push_from_the_admin_action(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine
) -> None:
    end_user = EndUser.objects.create()
    identity = ChannelIdentity.objects.create(
        channel="line", external_id=user_id(6), end_user=end_user
    )
    url = reverse("admin:conversations_channelidentity_changelist")
    with staff_browser(line_stack) as browser:
        selection = {
            "action": "send_line_message",
            "_selected_action": str(identity.pk),
            "csrfmiddlewaretoken": csrf(browser),
        }
        form = browser.post(url, data=selection)
        sent = browser.post(
            url,
            data={
                **selection,
                "apply": "1",
                "channel": str(line_channel.pk),
                "mode": "verbatim",
                "text": "Hello from the team",
            },
        )

    assert form.status_code == 200 and "Send a LINE message" in form.text
    assert sent.status_code == 302
    [call] = fake_line.calls.pushes()
    assert call.body == {
        "to": user_id(6),
        "messages": [{"type": "text", "text": "Hello from the team"}],
        "notificationDisabled": False,
    }


def test_staff_session_pushes_need_the_csrf_token(
    line_stack: LineStack, line_channel: LineChannel, fake_line: FakeLine
) -> None:
    body = {"to": user_id(), "text": "x"}
    with staff_browser(line_stack) as browser:
        refused = browser.post("/line/mia/push", json=body)
        sent = browser.post("/line/mia/push", json=body, headers={"X-CSRFToken": csrf(browser)})

    assert refused.status_code == 403
    assert refused.json() == {"detail": "CSRF token missing or incorrect."}
    assert sent.status_code == 200
    assert len(fake_line.calls.pushes()) == 1
