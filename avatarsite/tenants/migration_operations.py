"""The data step each app's tenant migration shares: existing rows join the default tenant."""

from __future__ import annotations

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def into_default_tenant(app_label: str, *model_names: str) -> migrations.RunPython:
    """Give every row of these models without a tenant the default tenant (reversible: the
    backward step has nothing to undo, as the column goes away with the field)."""

    def forward(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        tenant, _ = apps.get_model("tenants", "Tenant").objects.get_or_create(
            slug="default", defaults={"name": "Default"}
        )
        for name in model_names:
            model = apps.get_model(app_label, name)
            model.objects.filter(tenant__isnull=True).update(tenant=tenant)

    return migrations.RunPython(forward, migrations.RunPython.noop)
