"""LINE events as operators read them: who sent what (the sender's name when the character
knows them), the outcome after its status, and the time on the character's clock; another
tenant's staff see none of them."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from avatarsite.tenants.models import Membership, Tenant
from characters.models import Character
from conversations.line.handling import process_events
from conversations.line.models import LineChannel, LineEvent
from conversations.line.reading import text_of
from conversations.models import ChannelIdentity, EndUser

pytestmark = pytest.mark.django_db

KEN = "U4af4980629d8b3a1e2c7f0e1d2c3b4a5"


def standby(event_id: str, source: dict[str, str], **fields: Any) -> dict[str, Any]:
    """An event in standby mode: recorded and ignored, so nothing is sent to LINE."""
    return {
        "type": "message",
        "mode": "standby",
        "webhookEventId": event_id,
        "timestamp": 0,
        "source": source,
        "deliveryContext": {"isRedelivery": False},
        **fields,
    }


def staff(name: str, tenant: Tenant) -> Client:
    user = User.objects.create_user(name, password="pw", is_staff=True)
    Membership.objects.create(user=user, tenant=tenant, role=Membership.Role.VIEWER)
    client = Client()
    client.force_login(user)
    return client


def test_events_list_their_sender_text_and_outcome(
    character: Character, line_channel: LineChannel
) -> None:
    character.timezone = "Asia/Tokyo"
    character.save()
    ken = EndUser.objects.create(display_name="Ken")
    ChannelIdentity.objects.create(channel="line", external_id=KEN, end_user=ken)
    process_events(
        line_channel.pk,
        [
            standby(
                "01A",
                {"type": "user", "userId": KEN},
                message={"id": "1", "type": "text", "text": "おはよう <b>!</b>"},
            ),
            standby(
                "01B",
                {"type": "group", "groupId": "C1", "userId": "U0123456789abcdef"},
                message={"id": "2", "type": "sticker"},
            ),
        ],
    )

    page = staff("ann", character.tenant).get("/admin/line/lineevent/").content.decode()
    other = staff("bob", Tenant.named("globex")).get("/admin/line/lineevent/")

    first, second = LineEvent.objects.order_by("webhook_event_id")
    assert (first.sender_id, first.text) == (KEN, "おはよう <b>!</b>")
    assert (second.sender_id, second.text) == ("U0123456789abcdef", "(sticker)")
    assert "Ken" in page and "おはよう &lt;b&gt;!&lt;/b&gt;" in page
    assert "U01234567…" in page and "(sticker)" in page
    assert "Ignored</strong> standby mode" in page
    assert "JST" in page
    assert other.context["cl"].result_count == 0


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ({"type": "message", "message": {"type": "audio"}}, "(voice message)"),
        (
            {"type": "message", "message": {"type": "location", "title": "駅", "address": "1-1"}},
            "(location) 駅, 1-1",
        ),
        ({"type": "postback", "postback": {"data": "action=buy"}}, "(postback) action=buy"),
        ({"type": "follow"}, "(follow)"),
        ({"type": "message", "message": "not an object"}, "(None)"),
        ({"type": "message", "message": {"type": "text", "text": "x" * 900}}, "x" * 500),
    ],
)
def test_what_an_event_says(raw: dict[str, Any], text: str) -> None:
    assert text_of(raw) == text
