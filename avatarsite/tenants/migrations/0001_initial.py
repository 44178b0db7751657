from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def create_default_tenant(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    # Existing rows of every app move into this tenant (each app's tenant migration).
    apps.get_model("tenants", "Tenant").objects.get_or_create(
        slug="default", defaults={"name": "Default"}
    )


class Migration(migrations.Migration):
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Tenant",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100)),
                ("slug", models.SlugField(unique=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={"ordering": ["name"]},
        ),
        migrations.RunPython(create_default_tenant, migrations.RunPython.noop),
    ]
