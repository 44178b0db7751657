"""LINE's models moved from `conversations` to their own app (`line`) without moving data: a
database from before the move keeps its channels, events and permissions, and a fresh one gets
the same schema. Later, LINE rows joined their character's tenant."""

from __future__ import annotations

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor

from avatarsite.tenants.models import Tenant
from characters.models import Character
from conversations.line.models import LineChannel, LineEvent

BEFORE_THE_MOVE = ("conversations", "0011_apikey_characters")
BEFORE_LINE_TENANTS = ("line", "0001_initial")


def _migrate(targets: list[tuple[str, str | None]]) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor


def _latest() -> list[tuple[str, str | None]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_it_keeps_a_pre_move_databases_line_rows_and_permissions() -> None:
    character = Character.objects.create(slug="mia", name="Mia", persona="You are Mia.")
    permission_types = set(ContentType.objects.filter(app_label="line").values_list("pk", "model"))
    executor = _migrate([BEFORE_THE_MOVE, ("line", None)])
    old = executor.loader.project_state(BEFORE_THE_MOVE).apps
    old_channel = old.get_model("conversations", "LineChannel").objects.create(
        character_id=character.pk,
        slug="mia-line",
        channel_secret_env="MIA_SECRET",
        access_token_env="MIA_TOKEN",
    )
    old.get_model("conversations", "LineEvent").objects.create(
        channel=old_channel, webhook_event_id="01JX", event_type="message", status="done"
    )
    assert (
        set(
            ContentType.objects.filter(
                app_label="conversations", model__startswith="line"
            ).values_list("pk", "model")
        )
        == permission_types
    )

    _migrate(_latest())

    channel = LineChannel.objects.get()
    assert (channel.pk, channel.slug, channel.character) == (old_channel.pk, "mia-line", character)
    assert list(channel.events.values_list("webhook_event_id", "status")) == [("01JX", "done")]
    assert set(ContentType.objects.filter(app_label="line").values_list("pk", "model")) == (
        permission_types
    )
    assert not ContentType.objects.filter(app_label="conversations", model__startswith="line")


@pytest.mark.django_db(transaction=True)
def test_existing_line_rows_join_their_characters_tenant() -> None:
    acme, globex = Tenant.named("acme"), Tenant.named("globex")
    mia = Character.objects.create(tenant=acme, slug="mia", name="Mia", persona="You are Mia.")
    kai = Character.objects.create(tenant=globex, slug="kai", name="Kai", persona="You are Kai.")
    executor = _migrate([BEFORE_LINE_TENANTS])
    old = executor.loader.project_state(BEFORE_LINE_TENANTS).apps
    for character in (mia, kai):
        channel = old.get_model("line", "LineChannel").objects.create(
            character_id=character.pk,
            slug=f"{character.slug}-line",
            channel_secret_env="S",
            access_token_env="T",
        )
        old.get_model("line", "LineEvent").objects.create(
            channel=channel, webhook_event_id=character.slug, event_type="message", status="done"
        )

    _migrate(_latest())

    assert sorted(LineChannel.objects.values_list("slug", "tenant__slug")) == [
        ("kai-line", "globex"),
        ("mia-line", "acme"),
    ]
    assert sorted(LineEvent.objects.values_list("webhook_event_id", "tenant__slug")) == [
        ("kai", "globex"),
        ("mia", "acme"),
    ]


@pytest.mark.django_db(transaction=True)
def test_it_builds_lines_tables_in_a_fresh_database() -> None:
    call_command("migrate", "conversations", "zero", verbosity=0)
    assert "conversations_linechannel" not in connection.introspection.table_names()

    call_command("migrate", verbosity=0)

    character = Character.objects.create(slug="mia", name="Mia", persona="You are Mia.")
    channel = LineChannel.objects.create(
        character=character, slug="mia-line", channel_secret_env="S", access_token_env="T"
    )
    LineEvent.objects.create(
        channel=channel, webhook_event_id="01JX", event_type="message", status="done"
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        LineEvent.objects.create(
            channel=channel, webhook_event_id="01JX", event_type="message", status="done"
        )
    assert MigrationExecutor(connection).migration_plan(_latest()) == []
