"""LINE's models move from `conversations` to this app, their tables staying where they are.

Existing databases keep their rows: `conversations` 0012 forgets the models and this migration
declares them here, on the same tables, without touching the database (state only). Fresh
databases get the tables from `conversations` 0008, as before. The content types (and so the
staff's permissions on LINE channels and events) are relabelled rather than created anew.
"""

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps

import conversations.line.models

MODELS = ("linechannel", "lineevent")


def relabel_content_types(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    content_types = apps.get_model("contenttypes", "ContentType").objects
    if not content_types.filter(app_label="line", model__in=MODELS).exists():
        content_types.filter(app_label="conversations", model__in=MODELS).update(app_label="line")


def restore_content_types(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    content_types = apps.get_model("contenttypes", "ContentType").objects
    if not content_types.filter(app_label="conversations", model__in=MODELS).exists():
        content_types.filter(app_label="line", model__in=MODELS).update(app_label="conversations")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("characters", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("conversations", "0012_line_moves_to_its_own_app"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="LineChannel",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "slug",
                            models.SlugField(
                                help_text="Webhook URL: https://<your host>/line/<slug>/webhook",
                                unique=True,
                            ),
                        ),
                        (
                            "channel_secret_env",
                            models.CharField(
                                help_text="Name of the environment variable holding the channel secret (Basic settings).",
                                max_length=100,
                                validators=[
                                    django.core.validators.RegexValidator(
                                        "^[A-Za-z_][A-Za-z0-9_]*$",
                                        "Enter the name of an environment variable, not its value.",
                                    )
                                ],
                                verbose_name="channel secret variable",
                            ),
                        ),
                        (
                            "access_token_env",
                            models.CharField(
                                help_text="Name of the environment variable holding the channel access token (Messaging API tab, long-lived).",
                                max_length=100,
                                validators=[
                                    django.core.validators.RegexValidator(
                                        "^[A-Za-z_][A-Za-z0-9_]*$",
                                        "Enter the name of an environment variable, not its value.",
                                    )
                                ],
                                verbose_name="access token variable",
                            ),
                        ),
                        (
                            "loading_seconds",
                            models.PositiveSmallIntegerField(
                                default=20,
                                help_text="How long LINE shows the loading animation while the character thinks (5-60, steps of 5); it stops as soon as the reply arrives.",
                                validators=[
                                    django.core.validators.MinValueValidator(5),
                                    django.core.validators.MaxValueValidator(60),
                                    conversations.line.models.validate_loading_seconds,
                                ],
                            ),
                        ),
                        (
                            "is_default",
                            models.BooleanField(
                                default=False,
                                help_text="Also answers on /webhook, AIAvatarKit's LINE webhook URL.",
                            ),
                        ),
                        (
                            "is_active",
                            models.BooleanField(
                                default=True,
                                help_text="Inactive channels refuse webhooks (404) and pushes.",
                            ),
                        ),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        (
                            "character",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="line_channel",
                                to="characters.character",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "conversations_linechannel",
                        "verbose_name": "LINE channel",
                        "ordering": ["slug"],
                    },
                ),
                migrations.CreateModel(
                    name="LineEvent",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("webhook_event_id", models.CharField(max_length=64)),
                        ("event_type", models.CharField(max_length=32)),
                        ("source_type", models.CharField(blank=True, max_length=16)),
                        (
                            "source_id",
                            models.CharField(
                                blank=True, help_text="User, group or room id.", max_length=64
                            ),
                        ),
                        ("is_redelivery", models.BooleanField(default=False)),
                        (
                            "duplicates",
                            models.PositiveIntegerField(
                                default=0,
                                help_text="Later deliveries of this event that were skipped.",
                            ),
                        ),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("processing", "Processing"),
                                    ("done", "Done"),
                                    ("ignored", "Ignored"),
                                    ("failed", "Failed"),
                                ],
                                max_length=16,
                            ),
                        ),
                        (
                            "outcome",
                            models.TextField(
                                blank=True, help_text="What was done, or why it failed."
                            ),
                        ),
                        ("received_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "channel",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="events",
                                to="line.linechannel",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "conversations_lineevent",
                        "verbose_name": "LINE event",
                        "ordering": ["-received_at"],
                    },
                ),
                migrations.AddConstraint(
                    model_name="linechannel",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(("is_default", True)),
                        fields=("is_default",),
                        name="one_default_line_channel",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="lineevent",
                    constraint=models.UniqueConstraint(
                        fields=("channel", "webhook_event_id"), name="unique_line_webhook_event"
                    ),
                ),
            ],
        ),
        migrations.RunPython(relabel_content_types, restore_content_types),
    ]
