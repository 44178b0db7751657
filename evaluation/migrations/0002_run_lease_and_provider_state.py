"""Evaluation runs record their worker's lease and how many workers took them on; scenario
results keep the provider's state of their conversation; a beat entry (every minute, editable
in the admin's Periodic tasks) hands on the runs of lost workers."""

from django.db import migrations, models

from avatarsite.beat_entries import beat_entry


def count_started_runs(apps, schema_editor):
    """Runs started before leases were taken on by one worker."""
    apps.get_model("evaluation", "EvaluationRun").objects.filter(started_at__isnull=False).update(
        attempts=1
    )


class Migration(migrations.Migration):
    dependencies = [
        ("evaluation", "0001_initial"),
        ("django_celery_beat", "0018_improve_crontab_helptext"),
    ]

    operations = [
        migrations.AddField(
            model_name="evaluationrun",
            name="attempts",
            field=models.PositiveIntegerField(
                default=0,
                help_text="Workers that took the run on; more than one: a worker was lost and "
                "the next one resumed where it stopped.",
            ),
        ),
        migrations.AddField(
            model_name="evaluationrun",
            name="lease_token",
            field=models.UUIDField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="evaluationrun",
            name="leased_until",
            field=models.DateTimeField(
                blank=True,
                help_text="While running: when the worker's lease runs out unless renewed.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="scenarioresult",
            name="provider_state",
            field=models.JSONField(blank=True, default=dict, editable=False),
        ),
        migrations.RunPython(count_started_runs, migrations.RunPython.noop),
        beat_entry(
            "Evaluation runs of lost workers",
            "evaluation.tasks.resume_lost_runs",
            every=1,
            period="minutes",
            description="Queues again the evaluation runs whose worker was lost (lease run "
            "out), or fails them once their workers were lost EVALUATION_RUN_ATTEMPTS times.",
        ),
    ]
