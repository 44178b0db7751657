"""The beat entry of the memory tick: every minute, editable in the admin (Periodic tasks).
Created once; an operator's later edits are kept, and unapplying the migration removes it."""

from django.db import migrations

from avatarsite.beat_entries import beat_entry


class Migration(migrations.Migration):
    dependencies = [
        ("memory", "0001_initial"),
        ("django_celery_beat", "0018_improve_crontab_helptext"),
    ]

    operations = [
        beat_entry(
            "Memory tick",
            "memory.tasks.memory_tick",
            every=1,
            period="minutes",
            description="Embeds new memories, summarises conversations that went quiet "
            "(learning what they said about the user) and forgets what is past retention.",
        )
    ]
