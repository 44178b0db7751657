"""The services behind avatarsite: in CI, PostgreSQL and Redis for real, never skipped."""

from __future__ import annotations

import httpx
import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection, connections

from characters.models import Character
from conversations.models import Context, EndUser
from tests.conftest import IN_CI, AsgiServer, give_back_asgiref_thread_connections, require_service
from tests.postgresql.base import KEPT_TABLES


@pytest.mark.skipif(not IN_CI, reason="CI runs on PostgreSQL and Redis; elsewhere any is fine")
def test_ci_runs_on_postgresql_and_redis() -> None:
    assert connection.vendor == "postgresql"
    backend = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    assert backend == "channels_app.layers.OutageTolerantRedisChannelLayer"
    assert settings.CELERY_BROKER_URL.startswith("redis://")


@pytest.mark.django_db(transaction=True)
def test_healthz_reports_every_service(asgi_server: AsgiServer) -> None:
    response = httpx.get(f"{asgi_server.url}/healthz", timeout=10)

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "channel_layer": "ok", "broker": "ok"},
    }


async def test_it_round_trips_a_message_through_the_redis_channel_layer() -> None:
    require_service("Redis (REDIS_URL)", bool(settings.REDIS_URL))
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "greeting", "text": "hello"})

    assert await layer.receive(channel) == {"type": "greeting", "text": "hello"}


@pytest.mark.django_db(transaction=True)
async def test_an_async_tests_database_connection_is_given_back_after_it() -> None:
    """What every test's teardown does (tests/conftest.py), so PostgreSQL can drop the test
    database at the end of the run."""

    def holds_a_connection() -> bool:
        return connections["default"].connection is not None

    await EndUser.objects.acreate(display_name="async")
    assert await sync_to_async(holds_a_connection)()  # asgiref's thread, not this one

    give_back_asgiref_thread_connections()

    assert not await sync_to_async(holds_a_connection)()


@pytest.mark.skipif(not IN_CI, reason="the PostgreSQL flush; CI runs on PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_the_flush_between_transactional_tests_empties_every_table_but_the_kept_ones() -> None:
    character = Character.objects.create(slug="mia", name="Mia", persona="You are Mia.")
    Context.objects.create(
        tenant=character.tenant, character=character, end_user=EndUser.objects.create()
    )
    permissions = Permission.objects.count()

    # As a transactional test's teardown runs it: every model's table, no sequence reset.
    call_command("flush", interactive=False, verbosity=0)

    assert permissions and Permission.objects.count() == permissions
    assert ContentType.objects.filter(model="character").exists()
    emptied = [m for m in apps.get_models() if m._meta.db_table not in KEPT_TABLES]
    assert [m.__name__ for m in emptied if m._default_manager.exists()] == []
