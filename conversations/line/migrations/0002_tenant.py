"""LINE channels and events belong to a tenant: their character's.

The column is added nullable, existing rows take the tenant of the character they answer for
(an event, its channel's), and the column then becomes required.
"""

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps
from django.db.models import OuterRef, Subquery


def from_the_character(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    channels = apps.get_model("line", "LineChannel").objects
    events = apps.get_model("line", "LineEvent").objects
    characters = apps.get_model("characters", "Character").objects
    channels.update(
        tenant_id=Subquery(characters.filter(pk=OuterRef("character_id")).values("tenant_id"))
    )
    events.update(
        tenant_id=Subquery(channels.filter(pk=OuterRef("channel_id")).values("tenant_id"))
    )


VARIABLE_NAME = django.core.validators.RegexValidator(
    "^[A-Za-z_][A-Za-z0-9_]*$", "Enter the name of an environment variable, not its value."
)


def secret_name_field(verbose_name: str, holding: str) -> models.CharField:
    return models.CharField(
        help_text="Name of the tenant's provider secret (or allowed platform variable) holding "
        f"{holding}.",
        max_length=100,
        validators=[VARIABLE_NAME],
        verbose_name=verbose_name,
    )


def tenant_field(*, null: bool) -> models.ForeignKey:
    return models.ForeignKey(
        blank=True,
        null=null,
        on_delete=django.db.models.deletion.CASCADE,
        related_name="+",
        to="tenants.tenant",
    )


class Migration(migrations.Migration):
    dependencies = [
        ("characters", "0013_tenant"),
        ("line", "0001_initial"),
        ("tenants", "0001_initial"),
    ]

    operations = [
        migrations.AddField("linechannel", "tenant", tenant_field(null=True)),
        migrations.AddField("lineevent", "tenant", tenant_field(null=True)),
        migrations.RunPython(from_the_character, migrations.RunPython.noop),
        migrations.AlterField("linechannel", "tenant", tenant_field(null=False)),
        migrations.AlterField("lineevent", "tenant", tenant_field(null=False)),
        migrations.AlterField(
            "linechannel",
            "channel_secret_env",
            secret_name_field("channel secret variable", "the channel secret (Basic settings)"),
        ),
        migrations.AlterField(
            "linechannel",
            "access_token_env",
            secret_name_field(
                "access token variable",
                "the channel access token (Messaging API tab, long-lived)",
            ),
        ),
    ]
