"""The beat entry that drives character life: every 5 minutes, editable in the admin
(Periodic tasks). Created once; an operator's later edits are kept, and unapplying the
migration removes it."""

from django.db import migrations
from django.utils import timezone

TASK_NAME = "Character life tick"


def create_entry(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_five_minutes, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    _, created = PeriodicTask.objects.get_or_create(
        name=TASK_NAME,
        defaults={
            "task": "characters.tasks.life_tick",
            "interval": every_five_minutes,
            "description": "Enqueues the schedules and diaries that are due on each "
            "character's local clock, and catches up missed days.",
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
        ("characters", "0009_life_schedules_diaries_jobs"),
        ("django_celery_beat", "0018_improve_crontab_helptext"),
    ]

    operations = [migrations.RunPython(create_entry, remove_entry)]
