"""LINE events record the handling worker's lease and whether the user's answer is owed or
sent; a beat entry (every minute, editable in the admin's Periodic tasks) fails the events of
lost workers and apologises where an answer was owed."""

from django.db import migrations, models

from avatarsite.beat_entries import beat_entry


class Migration(migrations.Migration):
    dependencies = [
        ("line", "0003_line_event_sender_and_text"),
        ("django_celery_beat", "0018_improve_crontab_helptext"),
    ]

    operations = [
        migrations.AddField(
            model_name="lineevent",
            name="answer",
            field=models.CharField(
                blank=True,
                choices=[("", "not owed"), ("owed", "Owed"), ("sent", "Sent")],
                default="",
                help_text="Whether the user is owed a reply to this event, and whether it was sent.",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="lineevent",
            name="leased_until",
            field=models.DateTimeField(
                blank=True,
                help_text="While processing: when the handling worker's lease runs out unless renewed.",
                null=True,
            ),
        ),
        beat_entry(
            "LINE events of lost workers",
            "line.fail_lost_events",
            every=1,
            period="minutes",
            description="Fails LINE events whose worker was lost (lease run out) and "
            "pushes the character's apology to users who were owed an answer.",
        ),
    ]
