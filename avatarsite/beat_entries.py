"""The data step the apps' migrations share to put a periodic task on Celery beat's schedule."""

from __future__ import annotations

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps
from django.utils import timezone


def beat_entry(
    name: str, task: str, *, every: int, period: str, description: str
) -> migrations.RunPython:
    """Create the beat entry `name` running `task` every `every` `period` (an interval period
    of django-celery-beat: "minutes", "hours"...), editable in the admin (Periodic tasks).

    Created once: an entry of that name that already exists, maybe edited by an operator, is
    kept as it is. Unapplying the migration removes it.
    """

    def create(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        interval, _ = apps.get_model(
            "django_celery_beat", "IntervalSchedule"
        ).objects.get_or_create(every=every, period=period)
        _, created = apps.get_model("django_celery_beat", "PeriodicTask").objects.get_or_create(
            name=name, defaults={"task": task, "interval": interval, "description": description}
        )
        if created:
            # A beat already running reloads its schedule when this timestamp moves.
            apps.get_model("django_celery_beat", "PeriodicTasks").objects.update_or_create(
                ident=1, defaults={"last_update": timezone.now()}
            )

    def remove(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=name).delete()

    return migrations.RunPython(create, remove)
