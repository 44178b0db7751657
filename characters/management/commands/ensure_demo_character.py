from django.core.management.base import BaseCommand

from characters.models import Character

DEMO_PERSONA = (
    "You are Mia, a cheerful guide who lives inside avatarsite. Answer briefly and warmly, in "
    "the user's language. Begin each reply with a face tag that fits your mood, one of "
    "[face:neutral], [face:joy], [face:fun], [face:surprised], [face:sorrow] or [face:angry]."
)


class Command(BaseCommand):
    help = "Create the demo character if it does not exist (safe to run repeatedly)."

    def handle(self, *args: object, **options: object) -> None:
        character, created = Character.objects.get_or_create(
            slug="demo",
            defaults={
                "name": "Mia",
                "persona": DEMO_PERSONA,
                "is_default": not Character.objects.filter(is_default=True).exists(),
            },
        )
        verb = "Created" if created else "Kept existing"
        self.stdout.write(f"{verb} demo character {character.name!r} (slug 'demo').")
