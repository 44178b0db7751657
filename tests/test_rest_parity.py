"""The staff REST API for characters' shared context, guardrails, MCP servers and voices:
each walled off per tenant (another tenant's row, or character, answers exactly like an
unknown one), validated by the model's own rules, stdio MCP servers for superusers only."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from avatarsite.tenants.models import Membership, Tenant
from channels_app.models import LiveSession
from characters.models import Character
from conversations.models import Context, EndUser, Guardrail, McpServer, SharedMessage
from conversations.speech.models import VoiceSettings
from conversations.transports.aiavatar_wire import RESPONSE_KEYS
from memory.models import MemoryItem

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme() -> Tenant:
    return Tenant.named("acme")


@pytest.fixture
def globex() -> Tenant:
    return Tenant.named("globex")


@pytest.fixture
def alice(acme: Tenant, globex: Tenant) -> Client:
    """An admin of acme, whose character is mia; globex has kai."""
    Character.objects.create(tenant=acme, slug="mia", name="Mia")
    Character.objects.create(tenant=globex, slug="kai", name="Kai")
    user = User.objects.create_user("alice", password="pw", is_staff=True)
    Membership.objects.create(user=user, tenant=acme, role=Membership.Role.ADMIN)
    client = Client()
    client.force_login(user)
    return client


def post(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, body, content_type="application/json")


def test_shared_messages_are_added_listed_and_kept_by_the_characters_retention(
    alice: Client,
) -> None:
    Character.objects.filter(slug="mia").update(shared_context_size=2)
    for text in ("one", "two", "three"):
        assert (
            post(alice, "/api/shared-messages/", {"character": "mia", "content": text}).status_code
            == 201
        )

    listed = alice.get("/api/shared-messages/?character=mia").json()["results"]

    assert [m["content"] for m in listed] == ["three", "two"]
    assert {m["source"] for m in listed} == {"staff"}
    assert alice.delete(f"/api/shared-messages/{listed[0]['id']}/").status_code == 204
    assert SharedMessage.objects.count() == 1


def test_a_foreign_character_or_row_answers_like_an_unknown_one(
    alice: Client, globex: Tenant
) -> None:
    kai = Character.objects.get(slug="kai")
    theirs = [
        ("shared-messages", SharedMessage.objects.create(character=kai, content="secret")),
        ("guardrails", Guardrail.objects.create(tenant=globex, name="g", pattern="x", message="n")),
        (
            "mcp-servers",
            McpServer.objects.create(tenant=globex, name="crm", transport="http", url="http://x/"),
        ),
        ("voices", VoiceSettings.objects.create(character=kai)),
    ]
    for route, row in theirs:
        assert alice.get(f"/api/{route}/").json()["results"] == []
        assert alice.get(f"/api/{route}/{row.pk}/").status_code == 404
        assert alice.delete(f"/api/{route}/{row.pk}/").status_code == 404
        assert alice.get(f"/api/{route}/{row.pk + 1000}/").status_code == 404

    for character in ("kai", "nobody"):
        refused = [
            post(alice, "/api/shared-messages/", {"character": character, "content": "hi"}),
            post(
                alice,
                "/api/guardrails/",
                {
                    "name": "g",
                    "character": character,
                    "applies_to": "request",
                    "pattern": "x",
                    "action": "block",
                    "message": "No.",
                },
            ),
            post(alice, "/api/voices/", {"character": character}),
        ]
        assert [r.status_code for r in refused] == [400] * 3
        assert [r.json()["character"] for r in refused] == [
            [f"Object with slug={character} does not exist."]
        ] * 3
    assert SharedMessage.objects.count() == 1 and VoiceSettings.objects.count() == 1
    for unstorable in ("mi\x00a", "mi\ud800a"):  # found by the fuzz campaign: a 500 before
        refused = post(alice, "/api/shared-messages/", {"character": unstorable, "content": "x"})
        assert refused.status_code == 400 and "character" in refused.json()


def test_guardrails_are_created_in_the_staff_users_tenant_and_validated(
    alice: Client, acme: Tenant, settings: Settings
) -> None:
    settings.TURN_HOOK_MODULES = ["tests.conversations.turn_hooks"]
    python = {
        "name": "passwords",
        "character": "mia",
        "applies_to": "both",
        "kind": "python",
        "class_path": "tests.conversations.turn_hooks.NoPasswords",
        "action": "block",
        "message": "No.",
    }
    made = post(alice, "/api/guardrails/", python)
    bad_class = post(alice, "/api/guardrails/", {**python, "class_path": "os.system"})
    bad_pattern = post(
        alice, "/api/guardrails/", {**python, "kind": "pattern", "pattern": "(", "class_path": ""}
    )

    assert made.status_code == 201, made.json()
    assert Guardrail.objects.get().tenant == acme
    assert bad_class.status_code == 400
    assert "TURN_HOOK_MODULES" in str(bad_class.json()["class_path"])
    assert bad_pattern.status_code == 400 and "pattern" in bad_pattern.json()
    changed = alice.patch(
        f"/api/guardrails/{made.json()['id']}/",
        {"character": None, "is_active": False},
        content_type="application/json",
    )
    assert changed.status_code == 200
    assert changed.json()["character"] is None and changed.json()["is_active"] is False


def test_mcp_servers_over_http_for_admins_stdio_for_superusers_only(
    alice: Client, admin_client: Client
) -> None:
    http = {"name": "crm", "transport": "http", "url": "https://crm.example.com/mcp"}
    stdio = {"name": "local", "transport": "stdio", "command": "uvx", "args": ["my-server"]}

    made = post(alice, "/api/mcp-servers/", http)
    again = post(alice, "/api/mcp-servers/", http)
    forbidden = post(alice, "/api/mcp-servers/", stdio)
    to_stdio = alice.patch(
        f"/api/mcp-servers/{made.json()['id']}/",
        {"transport": "stdio", "command": "sh"},
        content_type="application/json",
    )
    by_superuser = post(admin_client, "/api/mcp-servers/", stdio)
    no_url = post(alice, "/api/mcp-servers/", {"name": "x", "transport": "http"})

    assert made.status_code == 201, made.json()
    assert again.status_code == 400 and "name" in again.json()
    assert forbidden.status_code == 403 and to_stdio.status_code == 403
    assert by_superuser.status_code == 201, by_superuser.json()
    assert no_url.status_code == 400 and "url" in no_url.json()
    assert [s["name"] for s in alice.get("/api/mcp-servers/").json()["results"]] == ["crm"]
    stdio_id = by_superuser.json()["id"]
    assert alice.get(f"/api/mcp-servers/{stdio_id}/").status_code == 404


def test_voices_round_trip_and_one_per_character(alice: Client) -> None:
    made = post(
        alice,
        "/api/voices/",
        {"character": "mia", "tts_provider": "espeak", "tts_speed": 1.2, "stt_language": "ja"},
    )
    second = post(alice, "/api/voices/", {"character": "mia"})
    read = alice.get("/api/voices/?character=mia").json()["results"]

    assert made.status_code == 201, made.json()
    assert second.status_code == 400
    assert len(read) == 1 and read[0]["tts_speed"] == 1.2 and read[0]["character"] == "mia"


def test_lists_of_conversations_memories_and_live_sessions_show_only_the_tenants_rows(
    alice: Client, globex: Tenant
) -> None:
    kai = Character.objects.get(slug="kai")
    ada = EndUser.objects.create(tenant=globex)
    Context.objects.create(character=kai, end_user=ada)
    MemoryItem.objects.create(
        tenant=globex, kind=MemoryItem.Kind.TURN, key="k", character=kai, content="secret"
    )
    LiveSession.objects.create(
        tenant=globex, channel_name="c1", session_id="s1", end_user=ada, character=kai
    )

    for route in ("contexts", "memories", "live-sessions"):
        assert alice.get(f"/api/{route}/").json()["results"] == [], route
        assert alice.get(f"/api/{route}/?character=kai").json()["results"] == [], route


def test_the_schema_describes_the_chat_endpoints_requests_and_events(
    admin_client: Client,
) -> None:
    schema = admin_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    components = schema["components"]["schemas"]

    def request_schema(path: str) -> dict[str, Any]:
        ref = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        return components[ref["schema"]["$ref"].rpartition("/")[2]]

    assert request_schema("/chat")["required"] == ["type"]
    assert set(request_schema("/chat-messages")["required"]) == {"query", "user"}
    assert set(request_schema("/v1/chat/completions")["required"]) == {"model", "messages"}
    envelope = components["AIAvatarEnvelope"]
    assert list(envelope["properties"]) == list(RESPONSE_KEYS)  # aiavatar 0.9.2's 13 keys
    for path, shape in (
        ("/chat", "detail"),
        ("/chat-messages", "code"),
        ("/v1/chat/completions", "error"),
    ):
        responses = schema["paths"][path]["post"]["responses"]
        assert "text/event-stream" in responses["200"]["content"]
        assert shape in responses["401"]["content"]["application/json"]["schema"]["required"]
    for route in ("shared-messages", "guardrails", "mcp-servers", "voices"):
        assert f"/api/{route}/" in schema["paths"]
