from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tenants", "0003_config_version"),
    ]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="audio_retention_days",
            field=models.PositiveSmallIntegerField(
                default=30,
                help_text="Days recorded conversation audio is kept (characters that record audio); older recordings are deleted every night.",
            ),
        ),
    ]
