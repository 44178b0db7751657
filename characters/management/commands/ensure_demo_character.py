from django.core.management.base import BaseCommand, CommandParser

from avatarsite.tenants.models import DEFAULT_TENANT_SLUG, Tenant
from characters.models import Character

DEMO_PERSONA = (
    "You are Mia, a cheerful guide who lives inside avatarsite. Answer briefly and warmly, in "
    "the user's language. Begin each reply with a face tag that fits your mood, one of "
    "[face:neutral], [face:joy], [face:fun], [face:surprised], [face:sorrow] or [face:angry]."
)


class Command(BaseCommand):
    help = "Create the demo character if it does not exist (safe to run repeatedly)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tenant",
            default=DEFAULT_TENANT_SLUG,
            help="The slug of the tenant it belongs to, created if new (default: default).",
        )

    def handle(self, *args: object, tenant: str, **options: object) -> None:
        owner = Tenant.named(tenant)
        character, created = Character.objects.get_or_create(
            tenant=owner,
            slug="demo",
            defaults={
                "name": "Mia",
                "persona": DEMO_PERSONA,
                "is_default": not Character.objects.filter(tenant=owner, is_default=True).exists(),
            },
        )
        verb = "Created" if created else "Kept existing"
        self.stdout.write(
            f"{verb} demo character {character.name!r} (slug 'demo', tenant {tenant!r})."
        )
