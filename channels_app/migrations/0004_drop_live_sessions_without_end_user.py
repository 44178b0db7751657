"""A live session is always an admitted end user's: rows without one were left by a server
that predates admission and describe no open socket, so they go."""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def drop_sessions_without_end_user(
    apps: StateApps, schema_editor: BaseDatabaseSchemaEditor
) -> None:
    apps.get_model("channels_app", "LiveSession").objects.filter(end_user__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("channels_app", "0003_tenant_required"),
        ("conversations", "0010_tenant_required"),
    ]

    operations = [
        migrations.RunPython(drop_sessions_without_end_user, migrations.RunPython.noop),
    ]
