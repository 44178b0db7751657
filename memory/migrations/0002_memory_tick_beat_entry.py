"""The beat entry of the memory tick: every minute, editable in the admin (Periodic tasks).
Created once; an operator's later edits are kept, and unapplying the migration removes it."""

from django.db import migrations
from django.utils import timezone

TASK_NAME = "Memory tick"


def create_entry(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    _, created = PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "memory.tasks.memory_tick",
            "interval": every_minute,
            "description": "Embeds new memories, summarises conversations that went quiet "
            "(learning what they said about the user) and forgets what is past retention.",
        },
    )
    if created:
        apps.get_model("django_celery_beat", "PeriodicTasks").objects.update_or_create(
            ident=1, defaults={"last_update": timezone.now()}
        )


def remove_entry(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("memory", "0001_initial"),
        ("django_celery_beat", "0018_improve_crontab_helptext"),
    ]

    operations = [migrations.RunPython(create_entry, remove_entry)]
