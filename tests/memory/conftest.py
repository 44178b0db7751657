"""Memory fixtures: a second tenant with its own character, and staff of the first."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from avatarsite.tenants.models import Membership, Tenant
from characters.models import Character
from conversations.models import EndUser
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture
def globex_character(fake_openai: FakeOpenAI) -> Character:
    """Another tenant's character with the same slug as the default one."""
    return Character.objects.create(
        tenant=Tenant.named("globex"),
        slug="mia",
        name="Mia",
        persona="You are Mia.",
        llm_model="gpt-4o-mini",
        llm_base_url=fake_openai.base_url,
    )


@pytest.fixture
def hana(character: Character) -> EndUser:
    return EndUser.objects.create(tenant=character.tenant, display_name="Hana")


@pytest.fixture
def staff(character: Character) -> Client:
    """Admin-role staff of the default tenant (not a superuser)."""
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    Membership.objects.create(user=user, tenant=character.tenant, role=Membership.Role.ADMIN)
    client = Client()
    client.force_login(user)
    return client
