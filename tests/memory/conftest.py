"""Memory fixtures: a second tenant with its own character, staff of the first, and the
character's LINE account on the fake LINE platform."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from avatarsite.tenants.models import Membership, Tenant
from characters.models import Character
from conversations.line.models import LineChannel
from conversations.models import EndUser
from tests.conversations.line.conftest import (
    SECRET_VARIABLE,
    TOKEN_VARIABLE,
    fake_line,
    fake_line_server,
)
from tests.fakes.line_server import ACCESS_TOKEN, CHANNEL_SECRET, FakeLine
from tests.fakes.openai_server import FakeOpenAI

__all__ = ["fake_line", "fake_line_server"]  # the LINE tests' fixtures, used here too


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


@pytest.fixture
def line_channel(
    character: Character, fake_line: FakeLine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> LineChannel:
    """The character's LINE account, its API on the fake LINE server."""
    settings.LINE_API_BASE_URL = settings.LINE_API_DATA_BASE_URL = fake_line.base_url
    monkeypatch.setenv(SECRET_VARIABLE, CHANNEL_SECRET)
    monkeypatch.setenv(TOKEN_VARIABLE, ACCESS_TOKEN)
    return LineChannel.objects.create(
        character=character,
        slug="mia",
        channel_secret_env=SECRET_VARIABLE,
        access_token_env=TOKEN_VARIABLE,
        is_default=True,
    )
