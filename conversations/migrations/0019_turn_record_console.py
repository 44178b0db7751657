from django.db import migrations, models

import conversations.models


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0018_python_guardrails_shared_messages"),
    ]

    operations = [
        migrations.AddField(
            model_name="turnrecord",
            name="feedback_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="turnrecord",
            name="guardrails",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="turnrecord",
            name="request_audio",
            field=models.FileField(
                blank=True, editable=False, upload_to=conversations.models.recording_name
            ),
        ),
        migrations.AddField(
            model_name="turnrecord",
            name="response_audio",
            field=models.FileField(
                blank=True, editable=False, upload_to=conversations.models.recording_name
            ),
        ),
        migrations.AlterField(
            model_name="turnrecord",
            name="feedback_content",
            field=models.TextField(blank=True, verbose_name="feedback comment"),
        ),
    ]
