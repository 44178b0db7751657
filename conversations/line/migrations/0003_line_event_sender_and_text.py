from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("line", "0002_tenant"),
    ]

    operations = [
        migrations.AddField(
            model_name="lineevent",
            name="sender_id",
            field=models.CharField(
                blank=True,
                help_text="The LINE user who sent it (in a group too).",
                max_length=64,
                verbose_name="sender",
            ),
        ),
        migrations.AddField(
            model_name="lineevent",
            name="text",
            field=models.TextField(
                blank=True, help_text="What was sent: the text, or what kind of thing."
            ),
        ),
    ]
