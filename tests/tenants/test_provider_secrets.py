"""Provider secrets: encrypted at rest, write-only, used by the tenant's own characters only;
environment variables only from the platform's allow-list, and never sent to a tenant's URL."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from cryptography.fernet import Fernet
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client

from avatarsite.tenants import crypto
from avatarsite.tenants.models import Membership, ProviderSecret, Tenant
from avatarsite.tenants.provider_secrets import load_secrets
from characters.models import Character
from conversations.llm import ChatMessage, EchoProvider, LLMRequest, provider_for
from conversations.models import McpServer
from conversations.speech.models import TTSProvider, VoiceSettings
from tests.fakes.openai_server import FakeOpenAI, ScriptedReply

pytestmark = pytest.mark.django_db

ATTACKER = "https://attacker.example.com/v1"
HELLO = LLMRequest(messages=[ChatMessage(role="user", content="Hello")], model="gpt-4o-mini")


@pytest.fixture
def acme() -> Tenant:
    return Tenant.named("acme")


@pytest.fixture
def alice(acme: Tenant) -> Client:
    """Staff of acme with the admin role: may add characters, not read server secrets."""
    user = User.objects.create_user("alice", password="pw", is_staff=True)
    Membership.objects.create(user=user, tenant=acme, role=Membership.Role.ADMIN)
    client = Client()
    client.force_login(user)
    return client


def store(tenant: Tenant, name: str, value: str) -> ProviderSecret:
    secret = ProviderSecret(tenant=tenant, name=name)
    secret.set_value(value)
    secret.save()
    return secret


def admin_character_form(**fields: Any) -> dict[str, Any]:
    form = {
        "slug": "evil",
        "name": "Evil",
        "language": "en-US",
        "timezone": "UTC",
        "llm_provider": "openai",
        "llm_model": "gpt-4o-mini",
        "llm_max_tokens": 4096,
        "default_user_name": "you",
        "context_timeout_seconds": 0,
        "artifact_catalog": "{}",
        "disabled_tools": "[]",
        "schedule_hour": 6,
        "diary_hour": 23,
        "apology": "Sorry.",
        "openai_history": "server",
        "shared_context_size": 20,
        "shared_context_max_age_hours": 0,
    }
    for prefix in ("voice", "weekly_schedule", "schedules", "diaries", "shared_messages"):
        form |= {f"{prefix}-TOTAL_FORMS": 0, f"{prefix}-INITIAL_FORMS": 0}
    return form | fields


def test_the_reported_secret_key_exfiltration_is_refused(alice: Client) -> None:
    """A staff user pointed a character's key at DJANGO_SECRET_KEY and its base URL at their
    own server, to receive the secret key as an Authorization header."""
    attempt = {"llm_api_key_env": "DJANGO_SECRET_KEY", "llm_base_url": ATTACKER}

    page = alice.post("/admin/characters/character/add/", admin_character_form(**attempt))
    rest = alice.post(
        "/api/characters/",
        {"slug": "evil", "name": "Evil", **attempt},
        content_type="application/json",
    )

    assert page.status_code == 200  # the form again, with the error
    assert "not one of this tenant&#x27;s provider secrets" in page.content.decode()
    assert rest.status_code == 400 and "llm_api_key_env" in rest.json()
    assert not Character.objects.filter(slug="evil").exists()


def test_a_platform_key_is_never_sent_to_a_tenants_url(alice: Client) -> None:
    attempt = {"llm_api_key_env": "OPENAI_API_KEY", "llm_base_url": ATTACKER}

    rest = alice.post(
        "/api/characters/",
        {"slug": "evil", "name": "Evil", **attempt},
        content_type="application/json",
    )
    platform_endpoint = alice.post(
        "/api/characters/",
        {"slug": "fine", "name": "Fine", "llm_api_key_env": "OPENAI_API_KEY"},
        content_type="application/json",
    )

    assert rest.status_code == 400
    assert "only sent to its provider's own endpoint" in rest.json()["llm_api_key_env"][0]
    assert platform_endpoint.status_code == 201


def test_a_server_variable_is_never_read_even_from_a_row_written_by_hand(acme: Tenant) -> None:
    # A row that skipped validation (written before this check, or by code) still cannot
    # reach a variable outside the allow-list: it falls back to the echo provider.
    character = Character.objects.create(
        tenant=acme,
        slug="old",
        name="Old",
        llm_api_key_env="DJANGO_SECRET_KEY",
        llm_base_url=ATTACKER,
    )

    assert isinstance(provider_for(character), EchoProvider)


def test_a_tenant_secret_is_what_the_provider_is_called_with(
    fake_llm: FakeOpenAI, acme: Tenant
) -> None:
    store(acme, "ACME_OPENAI", fake_llm.api_key)
    character = Character.objects.create(
        tenant=acme,
        slug="mia",
        name="Mia",
        llm_base_url=fake_llm.base_url,
        llm_api_key_env="ACME_OPENAI",
    )
    load_secrets(character)
    fake_llm.script(ScriptedReply(text="Hi!"))

    async def reply() -> str:
        return "".join(
            [d async for d in provider_for(character).stream(HELLO) if isinstance(d, str)]
        )

    assert async_to_sync(reply)() == "Hi!"  # the fake answers only its own key


def test_another_tenants_secret_cannot_be_named(acme: Tenant) -> None:
    globex = Tenant.named("globex")
    store(globex, "GLOBEX_KEY", "sk-globex")
    thief = Character(tenant=acme, slug="thief", name="Thief", llm_api_key_env="GLOBEX_KEY")

    with pytest.raises(ValidationError) as refused:
        thief.full_clean()
    thief.save()

    assert "llm_api_key_env" in refused.value.message_dict
    assert isinstance(provider_for(thief), EchoProvider)


def test_secrets_are_encrypted_at_rest_and_never_shown_back(alice: Client, acme: Tenant) -> None:
    olga = User.objects.create_user("olga", password="pw", is_staff=True)
    Membership.objects.create(user=olga, tenant=acme, role=Membership.Role.OWNER)
    owner = Client()
    owner.force_login(olga)
    value = "sk-live-トークン-123"

    created = owner.post(
        "/admin/tenants/providersecret/add/", {"name": "ACME_OPENAI", "value": value}
    )
    secret = ProviderSecret.objects.get(name="ACME_OPENAI")
    page = owner.get(f"/admin/tenants/providersecret/{secret.pk}/change/").content.decode()
    listed = owner.get("/api/provider-secrets/").json()["results"]
    by_api = owner.post("/api/provider-secrets/", {"name": "ACME_TTS", "value": "tts-key"})
    refused = alice.post("/api/provider-secrets/", {"name": "X", "value": "y"})  # not owner

    assert created.status_code == 302
    assert secret.tenant == acme
    assert value not in secret.ciphertext and crypto.decrypt(secret.ciphertext) == value
    assert value not in page
    assert listed == [
        {
            "id": secret.pk,
            "name": "ACME_OPENAI",
            "created_at": listed[0]["created_at"],
            "updated_at": listed[0]["updated_at"],
        }
    ]
    assert by_api.status_code == 201 and "value" not in by_api.json()
    assert crypto.decrypt(ProviderSecret.objects.get(name="ACME_TTS").ciphertext) == "tts-key"
    assert refused.status_code == 403


def test_rotation_reencrypts_with_the_newest_key(acme: Tenant, settings: Any) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SECRETS_ENCRYPTION_KEYS = [old]
    store(acme, "ACME_OPENAI", "sk-rotate-me")

    settings.SECRETS_ENCRYPTION_KEYS = [new, old]  # step 1: the new key first, the old kept
    assert crypto.decrypt(ProviderSecret.objects.get().ciphertext) == "sk-rotate-me"
    call_command("rotate_secrets", stdout=open("/dev/null", "w"))  # noqa: SIM115

    settings.SECRETS_ENCRYPTION_KEYS = [new]  # step 3: the old key dropped
    assert crypto.decrypt(ProviderSecret.objects.get().ciphertext) == "sk-rotate-me"


def test_urls_chosen_by_a_tenant_take_only_its_own_secrets(acme: Tenant) -> None:
    mia = Character.objects.create(tenant=acme, slug="mia", name="Mia")
    store(acme, "ACME_MCP", "Bearer acme")
    voice = VoiceSettings(
        character=mia, tts_provider=TTSProvider.HTTP, tts_base_url=ATTACKER, tts_api_key_env=""
    )
    mcp = McpServer(tenant=acme, name="tools", transport="http", url=ATTACKER, headers={})

    refused = []
    for row, field, name in (
        (voice, "tts_api_key_env", "OPENAI_API_KEY"),
        (mcp, "headers", {"Authorization": "OPENAI_API_KEY"}),
        (mcp, "headers", {"Authorization": "DJANGO_SECRET_KEY"}),
    ):
        setattr(row, field, name)
        with pytest.raises(ValidationError) as error:
            row.full_clean()
        refused.append(field in error.value.message_dict)
    mcp.headers = {"Authorization": "ACME_MCP"}
    mcp.full_clean()

    assert refused == [True, True, True]
