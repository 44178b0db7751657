"""Staff see and change only their tenants' rows, with the permissions their role grants, in
the admin and in the REST API alike; another tenant's row answers exactly like a missing one."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from avatarsite.tenants.models import Membership, Tenant
from characters.models import Character
from conversations.line.models import LineChannel, LineEvent
from conversations.models import ApiKey, Context, EndUser, Guardrail, McpServer

pytestmark = pytest.mark.django_db


@dataclass
class World:
    acme: Tenant
    globex: Tenant
    mia: Character  # acme's
    kai: Character  # globex's


@pytest.fixture
def world() -> World:
    acme, globex = Tenant.named("acme"), Tenant.named("globex")
    return World(
        acme=acme,
        globex=globex,
        mia=Character.objects.create(tenant=acme, slug="mia", name="Mia"),
        kai=Character.objects.create(tenant=globex, slug="kai", name="Kai"),
    )


def staff(name: str, tenant: Tenant | None, role: str) -> Client:
    user = User.objects.create_user(name, password="pw", is_staff=True)
    if tenant is not None:
        Membership.objects.create(user=user, tenant=tenant, role=role)
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_lists_only_the_staff_users_tenant(world: World) -> None:
    alice = staff("alice", world.acme, Membership.Role.ADMIN)

    page = alice.get("/admin/characters/character/")

    assert page.status_code == 200
    assert b"Mia" in page.content and b"Kai" not in page.content


def test_another_tenants_row_is_not_found_in_the_admin(world: World) -> None:
    alice = staff("alice", world.acme, Membership.Role.ADMIN)
    base = f"/admin/characters/character/{world.kai.pk}"

    answers = [
        alice.get(f"{base}/change/").status_code,
        alice.post(f"{base}/change/", {"name": "Stolen"}).status_code,
        alice.get(f"{base}/delete/").status_code,
        alice.post(f"{base}/delete/", {"post": "yes"}).status_code,
        alice.get(f"{base}/history/").status_code,
        alice.get(f"{base}/preview-prompt/").status_code,
        alice.get("/admin/characters/character/999999/change/").status_code,
    ]

    assert answers == [404] * 7
    world.kai.refresh_from_db()
    assert world.kai.name == "Kai"


def test_line_channels_and_events_are_walled_off_like_the_rest(world: World) -> None:
    channels = [
        LineChannel.objects.create(
            character=character,
            slug=f"{character.slug}-line",
            channel_secret_env="S",
            access_token_env="T",
        )
        for character in (world.mia, world.kai)
    ]
    events = [
        LineEvent.objects.create(
            channel=channel,
            webhook_event_id=f"event-of-{channel.slug}",
            event_type="message",
            status=LineEvent.Status.DONE,
        )
        for channel in channels
    ]
    alice = staff("alice", world.acme, Membership.Role.ADMIN)

    channel_list = alice.get("/admin/line/linechannel/").content
    event_list = alice.get("/admin/line/lineevent/").content
    foreign = [
        alice.get(f"/admin/line/linechannel/{channels[1].pk}/change/").status_code,
        alice.get(f"/admin/line/lineevent/{events[1].pk}/change/").status_code,
    ]

    assert [channel.tenant for channel in channels] == [world.acme, world.globex]
    assert [event.tenant for event in events] == [world.acme, world.globex]
    assert b"mia-line" in channel_list and b"kai-line" not in channel_list
    assert b"event-of-mia-line" in event_list and b"event-of-kai-line" not in event_list
    assert foreign == [404, 404]


def test_a_viewer_cannot_add_or_change(world: World) -> None:
    vic = staff("vic", world.acme, Membership.Role.VIEWER)

    listed = vic.get("/admin/characters/character/")
    add_page = vic.get("/admin/characters/character/add/")
    added = vic.post("/admin/characters/character/add/", {"slug": "new", "name": "New"})
    changed = vic.post(f"/admin/characters/character/{world.mia.pk}/change/", {"name": "X"})
    rest_add = vic.post("/api/characters/", {"slug": "new", "name": "New"})
    rest_change = vic.patch("/api/characters/mia/", {"name": "X"}, content_type="application/json")

    assert listed.status_code == 200
    assert (add_page.status_code, added.status_code) == (403, 403)
    assert changed.status_code == 403
    assert (rest_add.status_code, rest_change.status_code) == (403, 403)
    assert list(Character.objects.values_list("name", flat=True).order_by("name")) == [
        "Kai",
        "Mia",
    ]


def test_staff_without_a_role_granting_add_character_cannot_add_one(world: World) -> None:
    # Staff without any membership: no tenant's rows, and no permission from a role.
    nobody = staff("nobody", None, "")

    assert nobody.get("/admin/characters/character/add/").status_code == 403
    assert nobody.post("/api/characters/", {"slug": "x", "name": "X"}).status_code == 403
    assert nobody.get("/api/characters/").status_code == 403


def test_a_direct_django_permission_counts_only_in_the_users_tenants(world: World) -> None:
    vic = staff("vic", world.acme, Membership.Role.VIEWER)
    user = User.objects.get(username="vic")
    user.user_permissions.add(Permission.objects.get(codename="change_character"))

    mine = vic.patch("/api/characters/mia/", {"name": "Mia2"}, content_type="application/json")
    theirs = vic.patch("/api/characters/kai/", {"name": "X"}, content_type="application/json")

    assert (mine.status_code, theirs.status_code) == (200, 404)


def test_an_admin_adds_rows_to_their_own_tenant(world: World) -> None:
    alice = staff("alice", world.acme, Membership.Role.ADMIN)

    page = alice.post(
        "/admin/characters/character/add/",
        {
            "slug": "lea",
            "name": "Lea",
            "language": "en-US",
            "timezone": "UTC",
            "llm_provider": "echo",
            "llm_model": "echo",
            "llm_api_key_env": "OPENAI_API_KEY",
            "llm_max_tokens": 4096,
            "default_user_name": "you",
            "context_timeout_seconds": 0,
            "artifact_catalog": "{}",
            "disabled_tools": "[]",
            "schedule_hour": 6,
            "diary_hour": 23,
            "apology": "Sorry.",
            "openai_history": "server",
            "voice-TOTAL_FORMS": 0,
            "voice-INITIAL_FORMS": 0,
            "weekly_schedule-TOTAL_FORMS": 0,
            "weekly_schedule-INITIAL_FORMS": 0,
            "schedules-TOTAL_FORMS": 0,
            "schedules-INITIAL_FORMS": 0,
            "diaries-TOTAL_FORMS": 0,
            "diaries-INITIAL_FORMS": 0,
            "shared_context_size": 20,
            "shared_context_max_age_hours": 0,
            "shared_messages-TOTAL_FORMS": 0,
            "shared_messages-INITIAL_FORMS": 0,
        },
    )
    made = alice.post("/api/characters/", {"slug": "noa", "name": "Noa"})

    assert page.status_code == 302
    assert made.status_code == 201
    assert set(Character.objects.filter(tenant=world.acme).values_list("slug", flat=True)) == {
        "mia",
        "lea",
        "noa",
    }


def test_related_choices_offer_only_the_tenants_rows(world: World) -> None:
    alice = staff("alice", world.acme, Membership.Role.ADMIN)
    Guardrail.objects.create(
        tenant=world.globex,
        name="theirs",
        character=world.kai,
        applies_to="both",
        pattern="x",
        action="block",
        message="no",
    )

    form = alice.get("/admin/conversations/guardrail/add/").content.decode()
    changelist = alice.get("/admin/conversations/guardrail/").content.decode()
    foreign = alice.post(
        "/admin/conversations/guardrail/add/",
        {
            "name": "g",
            "character": world.kai.pk,
            "applies_to": "both",
            "kind": "pattern",
            "pattern": "x",
            "action": "block",
            "message": "no",
            "is_active": "on",
        },
    )

    assert "Mia" in form and "Kai" not in form
    assert "Kai" not in changelist and "theirs" not in changelist  # nor in the filter
    assert foreign.status_code == 200  # the form refuses a character it does not offer
    assert not Guardrail.objects.filter(name="g").exists()


def test_the_rest_api_shows_only_the_tenants_rows(world: World) -> None:
    alice = staff("alice", world.acme, Membership.Role.ADMIN)
    ada = EndUser.objects.create(tenant=world.globex, display_name="Ada")
    theirs = Context.objects.create(character=world.kai, end_user=ada, channel="http")
    ApiKey.issue("globex key", world.globex)

    characters = alice.get("/api/characters/").json()["results"]
    answers = [
        alice.get("/api/characters/kai/").status_code,
        alice.delete("/api/characters/kai/").status_code,
        alice.get(f"/api/contexts/{theirs.pk}/").status_code,
        alice.get(f"/api/contexts/{theirs.pk}/messages/").status_code,
        alice.get(f"/api/end-users/{ada.pk}/").status_code,
    ]
    users = alice.get("/api/end-users/").json()["results"]
    keys = alice.get("/api/api-keys/").json()["results"]

    assert [c["slug"] for c in characters] == ["mia"]
    assert answers == [404] * 5
    assert users == [] and keys == []
    assert Character.objects.filter(slug="kai").exists()


def test_only_owners_manage_api_keys(world: World) -> None:
    alice = staff("alice", world.acme, Membership.Role.ADMIN)
    olga = staff("olga", world.acme, Membership.Role.OWNER)

    refused = alice.post("/api/api-keys/", {"name": "kiosk"})
    created = olga.post("/api/api-keys/", {"name": "kiosk"})

    assert refused.status_code == 403
    assert created.status_code == 201
    assert ApiKey.authenticate(created.json()["key"]).tenant_id == world.acme.pk


def test_superusers_see_every_tenant(world: World, admin_client: Client) -> None:
    slugs = [c["slug"] for c in admin_client.get("/api/characters/").json()["results"]]
    page = admin_client.get("/admin/characters/character/").content

    assert sorted(slugs) == ["kai", "mia"]
    assert b"Mia" in page and b"Kai" in page


def test_the_rest_api_answers_an_api_key_with_401_and_a_hint(world: World) -> None:
    raw_key = ApiKey.issue("acme key", world.acme)[1]

    response = Client().get("/api/characters/", HTTP_AUTHORIZATION=f"Bearer {raw_key}")

    assert response.status_code == 401
    assert "/chat" in response.json()["detail"] and "HTTP Basic" in response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Basic")


def test_only_superusers_start_commands_on_the_server(world: World, admin_client: Client) -> None:
    alice = staff("alice", world.acme, Membership.Role.ADMIN)
    stdio = {"name": "shell", "transport": "stdio", "command": "sh", "args": '["-c", "env"]'}
    form = {**stdio, "environment": "[]", "headers": "{}", "enabled": "on"}

    refused = alice.post("/admin/conversations/mcpserver/add/", form)
    allowed = admin_client.post(
        "/admin/conversations/mcpserver/add/", {**form, "tenant": world.acme.pk}
    )

    assert refused.status_code == 200 and "valid choice" in refused.content.decode()
    assert allowed.status_code == 302
    assert list(McpServer.objects.values_list("name", flat=True)) == ["shell"]
    server = McpServer.objects.get()
    assert alice.post(
        f"/admin/conversations/mcpserver/{server.pk}/change/", {**form, "command": "bash"}
    ).status_code in (403, 404)
