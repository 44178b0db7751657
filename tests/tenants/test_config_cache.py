"""The tenant configuration cache (avatarsite/tenants/config_cache.py): what admission and turns
read of a tenant's configuration is cached per process, and every change is seen by the next
request. Requests go through the in-process app, so the cache they fill is this process's."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from avatarsite.tenants.config_cache import cached, changed, current_version
from avatarsite.tenants.models import ProviderSecret, Tenant
from characters.models import Character, DailySchedule
from conversations.models import ApiKey, Guardrail
from tests.conftest import LLM_KEY_VARIABLE
from tests.fakes.openai_server import FakeOpenAI
from tests.inprocess import InProcessApp
from tests.tenants.test_cross_tenant import same_answer

pytestmark = pytest.mark.django_db(transaction=True)


def hello(**fields: Any) -> dict[str, Any]:
    return {"type": "start", "session_id": "s1", "user_id": "u1", "text": "Hello", **fields}


def system_prompt_sent(fake_llm: FakeOpenAI) -> str:
    content = fake_llm.requests[-1]["messages"][0]["content"]
    assert isinstance(content, str)
    return content


def tenant_with_mia(slug: str, fake: FakeOpenAI) -> tuple[Tenant, Character, str]:
    tenant = Tenant.named(slug)
    character = Character.objects.create(
        tenant=tenant,
        slug="mia",
        name="Mia",
        persona=f"You are {slug}'s Mia.",
        llm_model="gpt-4o-mini",
        llm_base_url=fake.base_url,
        llm_api_key_env=LLM_KEY_VARIABLE,
        is_default=True,
    )
    return tenant, character, ApiKey.issue(f"{slug} web", tenant)[1]


def test_a_character_edit_is_seen_by_the_next_turn(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    assert app.post_sse("/chat", hello(), key=api_key).status == 200
    assert system_prompt_sent(fake_llm).startswith("You are Mia.")

    character.persona = "You are Mia, a pirate."
    character.save()

    assert app.post_sse("/chat", hello(), key=api_key).status == 200
    assert system_prompt_sent(fake_llm).startswith("You are Mia, a pirate.")


def test_a_deactivated_character_is_unknown_to_the_next_request(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    assert app.post_sse("/characters/mia/chat", hello(), key=api_key).status == 200
    character.is_active = False
    character.save()
    refused = app.post_sse("/characters/mia/chat", hello(), key=api_key)
    assert refused.status == 404


def test_a_guardrail_and_a_schedule_added_apply_to_the_next_turn(
    app: InProcessApp, character: Character, api_key: str, fake_llm: FakeOpenAI
) -> None:
    assert app.post_sse("/chat", hello(text="Where is the treasure"), key=api_key).status == 200
    assert "Surfing at noon" not in system_prompt_sent(fake_llm)
    Guardrail.objects.create(
        character=character,
        name="no treasure",
        applies_to="request",
        kind="pattern",
        pattern="treasure",
        action="block",
        message="That stays buried.",
    )
    DailySchedule.objects.create(
        character=character,
        schedule_date=character.local_now(timezone.now()).date(),
        content="Surfing at noon",
    )
    requests_before = len(fake_llm.requests)

    blocked = app.post_sse("/chat", hello(text="Where is the treasure"), key=api_key)
    assert blocked.events[-1]["text"] == "That stays buried."
    assert len(fake_llm.requests) == requests_before  # blocked: no LLM call
    assert app.post_sse("/chat", hello(text="Hi"), key=api_key).status == 200
    assert "Surfing at noon" in system_prompt_sent(fake_llm)


def test_a_key_revoked_by_save_is_refused_at_once(
    app: InProcessApp, character: Character, fake_llm: FakeOpenAI
) -> None:
    key, raw = ApiKey.issue("soon revoked")
    assert app.post_sse("/chat", hello(), key=raw).status == 200
    key.revoked_at = timezone.now()
    key.save(update_fields=["revoked_at"])
    assert app.post_sse("/chat", hello(), key=raw).status == 401


def test_a_key_revoked_by_the_admin_action_is_refused_at_once(
    app: InProcessApp, character: Character, fake_llm: FakeOpenAI
) -> None:
    key, raw = ApiKey.issue("soon revoked")
    assert app.post_sse("/chat", hello(), key=raw).status == 200
    staff = Client()
    staff.force_login(get_user_model().objects.create_superuser("root", "r@example.com", "pw"))
    changelist = reverse("admin:conversations_apikey_changelist")
    staff.post(changelist, {"action": "revoke", "_selected_action": [key.pk]})
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert app.post_sse("/chat", hello(), key=raw).status == 401


def test_limiting_a_key_to_other_characters_applies_to_the_next_request(
    app: InProcessApp, character: Character, fake_llm: FakeOpenAI
) -> None:
    other = Character.objects.create(slug="kai", name="Kai", llm_base_url=fake_llm.base_url)
    key, raw = ApiKey.issue("narrowed")
    assert app.post_sse("/chat", hello(), key=raw).status == 200
    key.characters.add(other)  # a many-to-many change, no save of the key itself
    assert app.post_sse("/chat", hello(), key=raw).status == 404
    assert app.post_sse("/characters/kai/chat", hello(), key=raw).status == 200


def test_each_tenant_gets_its_own_character_and_a_foreign_one_stays_unknown(
    app: InProcessApp, fake_llm: FakeOpenAI
) -> None:
    _, _, acme_key = tenant_with_mia("acme", fake_llm)
    globex, _, globex_key = tenant_with_mia("globex", fake_llm)
    Character.objects.create(tenant=globex, slug="kai", name="Kai")

    for _ in range(2):  # the second round is served from the cache
        assert app.post_sse("/characters/mia/chat", hello(), key=acme_key).status == 200
        assert system_prompt_sent(fake_llm).startswith("You are acme's Mia.")
        assert app.post_sse("/characters/mia/chat", hello(), key=globex_key).status == 200
        assert system_prompt_sent(fake_llm).startswith("You are globex's Mia.")
        assert app.post_sse("/characters/kai/chat", hello(), key=globex_key).status == 200
        foreign = app.post_sse("/characters/kai/chat", hello(), key=acme_key)
        unknown = app.post_sse("/characters/zed/chat", hello(), key=acme_key)
        assert (foreign.status, unknown.status) == (404, 404)
        assert same_answer(foreign.body, unknown.body, "kai", "zed")


def test_one_tenants_change_leaves_the_others_cache_alone(fake_llm: FakeOpenAI) -> None:
    acme, mia, _ = tenant_with_mia("acme", fake_llm)
    globex, _, _ = tenant_with_mia("globex", fake_llm)
    acme_before, globex_before = current_version(acme.pk), current_version(globex.pk)

    ProviderSecret(tenant=acme, name="SHOP_KEY").save()
    mia.delete()

    assert current_version(acme.pk) not in (acme_before, None)
    assert current_version(globex.pk) == globex_before


def test_misses_are_read_again_and_bulk_changes_are_announced(fake_llm: FakeOpenAI) -> None:
    acme, _, _ = tenant_with_mia("acme", fake_llm)
    reads: list[int] = []

    def read(value: int | None) -> int | None:
        reads.append(1)
        return value

    assert cached(acme.pk, "missing", lambda: read(None)) is None
    assert cached(acme.pk, "missing", lambda: read(None)) is None
    assert cached(acme.pk, "there", lambda: read(7)) == 7
    assert cached(acme.pk, "there", lambda: read(8)) == 7
    assert len(reads) == 3  # a miss is never kept, a hit is

    Character.objects.filter(tenant=acme).update(persona="bulk")  # sends no signal
    assert cached(acme.pk, "there", lambda: read(8)) == 7
    changed(acme.pk)
    assert cached(acme.pk, "there", lambda: read(8)) == 8
