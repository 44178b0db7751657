"""LINE's models now belong to their own app (`line`, conversations/line/migrations/0001):
this app forgets them without dropping their tables, which `line` keeps using."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0011_apikey_characters"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.DeleteModel(name="LineEvent"),
                migrations.DeleteModel(name="LineChannel"),
            ],
        ),
    ]
