from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("characters", "0018_turn_hooks_shared_context_time_limit"),
    ]

    operations = [
        migrations.AddField(
            model_name="character",
            name="record_audio",
            field=models.BooleanField(
                default=False,
                help_text="Keep what people say to the character by voice and what it answers aloud, to listen to in its conversations; deleted after the tenant's retention period.",
            ),
        ),
    ]
