"""The beat entry that deletes conversation audio past each tenant's retention period: every
hour, editable in the admin (Periodic tasks). Created once; an operator's later edits are kept,
and unapplying the migration removes it."""

from django.db import migrations
from django.utils import timezone

TASK_NAME = "Recordings retention"


def create_entry(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_hour, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    _, created = PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "conversations.tasks.purge_recordings",
            "interval": every_hour,
            "description": "Deletes recorded conversation audio older than its tenant's "
            "retention period.",
        },
    )
    if created:
        # A beat already running reloads its schedule when this timestamp moves.
        apps.get_model("django_celery_beat", "PeriodicTasks").objects.update_or_create(
            ident=1, defaults={"last_update": timezone.now()}
        )


def remove_entry(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0019_turn_record_console"),
        ("django_celery_beat", "0018_improve_crontab_helptext"),
    ]

    operations = [migrations.RunPython(create_entry, remove_entry)]
