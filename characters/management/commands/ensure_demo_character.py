from django.core.management.base import BaseCommand, CommandParser

from avatarsite.tenants.models import DEFAULT_TENANT_SLUG, Tenant
from characters.models import Character

DEMO_PERSONA = (
    "You are Mia, a cheerful guide who lives inside avatarsite. Answer briefly and warmly, in "
    "the user's language. Begin each reply with a face tag that fits your mood, one of "
    "[face:neutral], [face:joy], [face:fun], [face:surprised], [face:sorrow] or [face:angry]."
)


DEMO_JA_PERSONA = (
    "あなたは avatarsite に住む明るい案内役のハナです。日本語で、短く温かく答えてください。"
    "返事の最初に気分に合う表情タグを一つ付けてください: [face:neutral]、[face:joy]、"
    "[face:fun]、[face:surprised]、[face:sorrow]、[face:angry] のどれか。"
    "英語の文を話すときはその文の前に [language:en] を、日本語に戻るときは [language:ja] を"
    "付けてください。"
)

# slug -> name, persona, language: the English demo and its Japanese sibling.
DEMOS = {
    "demo": ("Mia", DEMO_PERSONA, "en-US"),
    "demo-ja": ("ハナ", DEMO_JA_PERSONA, "ja-JP"),
}


class Command(BaseCommand):
    help = "Create the demo characters if they do not exist (safe to run repeatedly)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tenant",
            default=DEFAULT_TENANT_SLUG,
            help="The slug of the tenant it belongs to, created if new (default: default).",
        )

    def handle(self, *args: object, tenant: str, **options: object) -> None:
        owner = Tenant.named(tenant)
        for slug, (name, persona, language) in DEMOS.items():
            character, created = Character.objects.get_or_create(
                tenant=owner,
                slug=slug,
                defaults={
                    "name": name,
                    "persona": persona,
                    "language": language,
                    "is_default": not Character.objects.filter(
                        tenant=owner, is_default=True
                    ).exists(),
                },
            )
            verb = "Created" if created else "Kept existing"
            self.stdout.write(
                f"{verb} demo character {character.name!r} (slug {slug!r}, tenant {tenant!r})."
            )
