"""Tenants as data: every owned row has one, ids are unique per tenant, and existing databases
move into the default tenant."""

from __future__ import annotations

import uuid
from datetime import date
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from avatarsite.tenants.models import DEFAULT_TENANT_SLUG, Tenant
from characters.models import Character, Diary
from conversations.admission import session_key
from conversations.history import resolve_end_user
from conversations.models import ApiKey, Context, Guardrail, McpServer, Message, SessionState
from conversations.tools.guardrails import guardrails_for
from conversations.tools.mcp_servers import _configs_for

pytestmark = pytest.mark.django_db


def test_rows_with_a_parent_take_its_tenant() -> None:
    acme = Tenant.named("acme")
    character = Character.objects.create(tenant=acme, slug="mia", name="Mia")
    diary = Diary.objects.create(character=character, diary_date=date(2026, 1, 1), content="…")
    end_user = resolve_end_user(acme.pk, "http", "u1")
    context = Context.objects.create(character=character, end_user=end_user, channel="http")
    message = Message.objects.create(context=context, position=0, role="user", content="hi")

    assert {diary.tenant_id, context.tenant_id, message.tenant_id, end_user.tenant_id} == {acme.pk}


def test_rows_without_a_parent_or_tenant_go_to_the_default_tenant() -> None:
    character = Character.objects.create(slug="mia", name="Mia")

    assert character.tenant.slug == DEFAULT_TENANT_SLUG


def test_the_same_user_id_in_two_tenants_is_two_people() -> None:
    acme, globex = Tenant.named("acme"), Tenant.named("globex")

    first = resolve_end_user(acme.pk, "http", "u1")

    assert resolve_end_user(acme.pk, "http", "u1") == first
    assert resolve_end_user(globex.pk, "http", "u1") != first


def test_character_slugs_and_default_characters_are_per_tenant() -> None:
    acme, globex = Tenant.named("acme"), Tenant.named("globex")
    Character.objects.create(tenant=acme, slug="mia", name="Mia", is_default=True)
    Character.objects.create(tenant=globex, slug="mia", name="Mia", is_default=True)

    with pytest.raises(IntegrityError), transaction.atomic():
        Character.objects.create(tenant=acme, slug="mia", name="Another Mia")
    with pytest.raises(IntegrityError), transaction.atomic():
        Character.objects.create(tenant=acme, slug="kai", name="Kai", is_default=True)


def test_createapikey_issues_a_key_of_the_named_tenant_creating_it() -> None:
    out, err = StringIO(), StringIO()

    call_command("createapikey", "frontend", "--tenant", "acme", stdout=out, stderr=err)

    key = ApiKey.authenticate(out.getvalue().strip())
    assert key is not None and key.tenant.slug == "acme"
    assert "acme" in err.getvalue()


def test_createapikey_without_a_tenant_uses_the_default_one() -> None:
    out = StringIO()

    call_command("createapikey", "frontend", stdout=out, stderr=StringIO())

    key = ApiKey.authenticate(out.getvalue().strip())
    assert key is not None and key.tenant.slug == DEFAULT_TENANT_SLUG


def test_the_demo_character_is_created_per_tenant() -> None:
    call_command("ensure_demo_character", stdout=StringIO())
    call_command("ensure_demo_character", "--tenant", "acme", stdout=StringIO())
    call_command("ensure_demo_character", "--tenant", "acme", stdout=StringIO())

    demos = Character.objects.filter(slug="demo").order_by("tenant__slug")
    assert [(c.tenant.slug, c.is_default) for c in demos] == [
        ("acme", True),
        (DEFAULT_TENANT_SLUG, True),
    ]


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_existing_rows_into_the_default_tenant() -> None:
    executor = MigrationExecutor(connection)
    # Back to before tenants existed (every app's tenant migrations depend on tenants 0001).
    executor.migrate([("tenants", None)])
    old = executor.loader.project_state(
        [
            ("characters", "0012_greeting_apology_face_icons"),
            ("conversations", "0008_line_channels_and_events"),
        ]
    ).apps
    character = old.get_model("characters", "Character").objects.create(slug="mia", name="Mia")
    end_user = old.get_model("conversations", "EndUser").objects.create()
    context = old.get_model("conversations", "Context").objects.create(
        character_id=character.pk, end_user_id=end_user.pk, channel="http"
    )
    old.get_model("conversations", "Message").objects.create(
        context_id=context.pk, position=0, role="user", content="こんにちは"
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    default = Tenant.objects.get(slug=DEFAULT_TENANT_SLUG)
    assert Character.objects.get(slug="mia").tenant == default
    assert Message.objects.get(content="こんにちは").tenant == default
    assert Context.objects.get(pk=context.pk).tenant == default


def test_tenant_wide_guardrails_and_mcp_servers_reach_only_their_tenants_characters() -> None:
    acme, globex = Tenant.named("acme"), Tenant.named("globex")
    acme_mia = Character.objects.create(tenant=acme, slug="mia", name="Mia")
    globex_mia = Character.objects.create(tenant=globex, slug="mia", name="Mia")
    Guardrail.objects.create(
        tenant=acme,
        name="no prices",
        applies_to="request",
        pattern="price",
        action="block",
        message="No.",
    )
    McpServer.objects.create(tenant=acme, name="acme-crm", transport="http", url="http://x/mcp")

    assert [g.name for g in guardrails_for(acme_mia)] == ["no prices"]
    assert guardrails_for(globex_mia) == []
    assert [c.name for c in _configs_for(acme_mia)] == ["acme-crm"]
    assert _configs_for(globex_mia) == []


def test_a_session_key_stays_short_whatever_session_id_the_client_sends() -> None:
    end_user = uuid.uuid4()

    long_key = session_key(1, 2, end_user, "s" * 10_000)

    assert len(long_key) < 100 <= SessionState._meta.get_field("key").max_length
    assert session_key(1, 2, end_user, "a") != session_key(2, 2, end_user, "a")
    assert session_key(1, 2, end_user, "a") != session_key(1, 2, uuid.uuid4(), "a")
