"""The staff REST API: admins only, validated writes, keys shown once, an OpenAPI schema."""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from avatarsite.tenants.models import ProviderSecret, Tenant
from characters.models import Character
from conversations.models import ApiKey, Context, EndUser, Message

pytestmark = pytest.mark.django_db

MIA = {"slug": "mia", "name": "Mia", "persona": "You are Mia.", "timezone": "Asia/Tokyo"}


def test_it_is_for_staff_only(client: Client, django_user_model: type[User]) -> None:
    assert client.get("/api/characters/").status_code == 403
    client.force_login(django_user_model.objects.create_user("visitor", password="pw"))
    response = client.get("/api/characters/")

    assert response.status_code == 403
    assert "permission" in response.json()["detail"]


def test_it_accepts_http_basic_for_staff(django_user_model: type[User]) -> None:
    django_user_model.objects.create_superuser("ops", password="s3cret-pass")
    token = base64.b64encode(b"ops:s3cret-pass").decode()

    response = Client().get("/api/characters/", HTTP_AUTHORIZATION=f"Basic {token}")

    assert response.status_code == 200


def test_it_creates_updates_and_validates_characters(admin_client: Client) -> None:
    created = admin_client.post("/api/characters/", MIA, content_type="application/json")
    updated = admin_client.patch(
        "/api/characters/mia/", {"llm_temperature": 0.4}, content_type="application/json"
    )
    bad = admin_client.post(
        "/api/characters/",
        {**MIA, "slug": "bad", "timezone": "Mars/Olympus", "artifact_catalog": [1]},
        content_type="application/json",
    )

    assert created.status_code == 201 and created.json()["timezone"] == "Asia/Tokyo"
    assert updated.json()["llm_temperature"] == 0.4
    assert bad.status_code == 400
    assert set(bad.json()) == {"timezone", "artifact_catalog"}
    assert list(Character.objects.values_list("slug", flat=True)) == ["mia"]


def test_it_refuses_a_second_default_character_of_a_tenant_with_a_400(
    admin_client: Client,
) -> None:
    """The campaign's POST with `is_default: true` beside an existing default was a 500 (the
    database's one-default constraint); another tenant's default does not count."""
    Character.objects.create(tenant=Tenant.named("globex"), slug="kai", name="Kai", is_default=True)
    first = admin_client.post(
        "/api/characters/", {**MIA, "is_default": True}, content_type="application/json"
    )
    second = admin_client.post(
        "/api/characters/",
        {**MIA, "slug": "ren", "is_default": True},
        content_type="application/json",
    )
    admin_client.post("/api/characters/", {**MIA, "slug": "ren"}, content_type="application/json")
    promoted = admin_client.patch(
        "/api/characters/ren/", {"is_default": True}, content_type="application/json"
    )
    kept = admin_client.patch(
        "/api/characters/mia/", {"is_default": True}, content_type="application/json"
    )

    assert first.status_code == 201
    assert second.status_code == 400 and set(second.json()) == {"is_default"}
    assert promoted.status_code == 400 and set(promoted.json()) == {"is_default"}
    assert kept.status_code == 200
    defaults = Character.objects.filter(is_default=True).values_list("tenant__slug", "slug")
    assert sorted(defaults) == [("default", "mia"), ("globex", "kai")]


def test_it_shows_a_new_api_key_once_and_revokes_it(admin_client: Client) -> None:
    created = admin_client.post("/api/api-keys/", {"name": "kiosk"}).json()
    listed = admin_client.get("/api/api-keys/").json()["results"]
    assert ApiKey.authenticate(created["key"]).name == "kiosk"

    revoked = admin_client.post(f"/api/api-keys/{created['id']}/revoke/").json()

    assert ApiKey.authenticate(created["key"]) is None
    assert created["key"].startswith(created["prefix"])
    assert listed[0]["key"] is None
    assert revoked["revoked_at"] is not None


def test_it_lists_conversations_and_their_messages(admin_client: Client) -> None:
    mia = Character.objects.create(slug="mia", name="Mia")
    kai = Character.objects.create(slug="kai", name="Kai")
    user = EndUser.objects.create(display_name="Ada")
    context = Context.objects.create(character=mia, end_user=user, channel="http")
    Context.objects.create(character=kai, end_user=user, channel="http")
    for position, (role, content) in enumerate([("user", "Hi"), ("assistant", "Hello!")]):
        Message.objects.create(context=context, position=position, role=role, content=content)

    contexts = admin_client.get("/api/contexts/", {"character": "mia"}).json()["results"]
    messages = admin_client.get(f"/api/contexts/{context.id}/messages/").json()["results"]
    bad_filter = admin_client.get("/api/contexts/", {"end_user": "nope"})

    assert [c["id"] for c in contexts] == [str(context.id)]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "Hi"),
        ("assistant", "Hello!"),
    ]
    assert bad_filter.status_code == 400


def test_it_publishes_an_openapi_schema_and_docs_to_staff_only(
    admin_client: Client, client: Client
) -> None:
    for page in ("/api/schema/", "/api/docs/", "/api/redoc/"):
        assert client.get(page).status_code in (401, 403), page
    schema = admin_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    docs = admin_client.get("/api/docs/")

    assert schema.status_code == 200
    assert "/api/characters/" in schema.json()["paths"]
    assert docs.status_code == 200 and b"swagger-ui" in docs.content
    assert b"cdn." not in docs.content  # assets come from the sidecar package, not a CDN


def test_it_answers_a_url_matching_no_route_with_json_404(admin_client: Client) -> None:
    response = admin_client.get("/api/api-keys/1/x/")
    admin_page = admin_client.get("/admin/no-such-page/")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
    assert admin_page.status_code == 404 and admin_page["content-type"].startswith("text/html")


def test_it_caps_a_huge_page_limit(admin_client: Client) -> None:
    Character.objects.create(slug="mia", name="Mia")

    response = admin_client.get("/api/characters/", {"limit": 10**26, "offset": -5})

    assert response.status_code == 200
    assert [c["slug"] for c in response.json()["results"]] == ["mia"]


# A value other than the default for every field the REST API writes.
EVERY_FIELD = {
    "slug": "mia-2",
    "name": "ミア",
    "persona": "You are Mia, talking about {topic}.",
    "default_user_name": "お客さま",
    "language": "ja-JP",
    "timezone": "Asia/Tokyo",
    "llm_provider": "gemini",
    "llm_model": "gemini-2.5-flash",
    "llm_temperature": 0.3,
    "llm_allowed_models": "gemini-2.5-flash, gemini-2.5-pro",
    "llm_max_tokens": 512,
    "llm_base_url": "https://llm.example.com/v1",
    "llm_api_key_env": "MIA_LLM_KEY",
    "context_timeout_seconds": 120,
    "invoke_timeout_seconds": 45.0,
    "shared_context_size": 5,
    "shared_context_max_age_hours": 48,
    "on_error_hook": "tests.conversations.turn_hooks.content_filter_apology",
    "response_hook": "tests.conversations.turn_hooks.loud",
    "on_finish_hook": "tests.conversations.turn_hooks.note_finish",
    "use_turn_queue": True,
    "merge_window_seconds": 2.5,
    "wake_words": "ねえミア, hey mia",
    "wake_timeout_seconds": 30,
    "timestamp_interval_seconds": 600,
    "greeting": "[face:joy]こんにちは!",
    "apology": "ごめんなさい。",
    "face_icons": {"joy": "https://example.com/joy.png"},
    "voice_text_tags": "answer",
    "terminal_voice_tag": "answer",
    "artifact_catalog": {"menu": {"url": "https://example.com/menu.png"}},
    "disabled_tools": ["get_diary"],
    "schedule_hour": 6,
    "diary_hour": 22,
    "news_country": "JP",
    "dynamic_tools": True,
    "openai_history": "client",
    "record_audio": True,
    "is_default": True,
    "is_active": False,
}


def test_a_patch_of_every_character_field_round_trips(
    admin_client: Client, settings: Settings
) -> None:
    settings.TURN_HOOK_MODULES = ["tests.conversations.turn_hooks"]
    admin_client.post("/api/characters/", MIA, content_type="application/json")
    secret = ProviderSecret(tenant=Tenant.default(), name="MIA_LLM_KEY")
    secret.set_value("sk-mia")
    secret.save()
    written = {
        f.name
        for f in Character._meta.concrete_fields
        if f.editable and not f.primary_key and f.name != "tenant"
    }

    patched = admin_client.patch(
        "/api/characters/mia/", EVERY_FIELD, content_type="application/json"
    )
    read = admin_client.get("/api/characters/mia-2/").json()

    assert set(EVERY_FIELD) == written  # a new model field needs a value here, and the API
    assert patched.status_code == 200, patched.json()
    assert {name: read[name] for name in EVERY_FIELD} == EVERY_FIELD
