"""The beat entry that deletes conversation audio past each tenant's retention period: every
hour, editable in the admin (Periodic tasks). Created once; an operator's later edits are kept,
and unapplying the migration removes it."""

from django.db import migrations

from avatarsite.beat_entries import beat_entry


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0019_turn_record_console"),
        ("django_celery_beat", "0018_improve_crontab_helptext"),
    ]

    operations = [
        beat_entry(
            "Recordings retention",
            "conversations.tasks.purge_recordings",
            every=1,
            period="hours",
            description="Deletes recorded conversation audio older than its tenant's "
            "retention period.",
        )
    ]
