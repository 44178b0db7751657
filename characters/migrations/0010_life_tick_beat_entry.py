"""The beat entry that drives character life: every 5 minutes, editable in the admin
(Periodic tasks). Created once; an operator's later edits are kept, and unapplying the
migration removes it."""

from django.db import migrations

from avatarsite.beat_entries import beat_entry


class Migration(migrations.Migration):
    dependencies = [
        ("characters", "0009_life_schedules_diaries_jobs"),
        ("django_celery_beat", "0018_improve_crontab_helptext"),
    ]

    operations = [
        beat_entry(
            "Character life tick",
            "characters.tasks.life_tick",
            every=5,
            period="minutes",
            description="Enqueues the schedules and diaries that are due on each "
            "character's local clock, and catches up missed days.",
        )
    ]
