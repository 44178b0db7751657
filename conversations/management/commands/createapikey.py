from django.core.management.base import BaseCommand, CommandParser

from avatarsite.tenants.models import DEFAULT_TENANT_SLUG, Tenant
from conversations.models import ApiKey


class Command(BaseCommand):
    help = (
        "Create an API key of a tenant for the HTTP/WebSocket APIs and print it (shown only "
        "once). The tenant is created if it is new."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="What the key is for, e.g. 'web frontend'.")
        parser.add_argument(
            "--tenant",
            default=DEFAULT_TENANT_SLUG,
            help="The slug of the tenant whose characters the key reaches (default: default).",
        )

    def handle(self, *args: object, name: str, tenant: str, **options: object) -> None:
        _, raw_key = ApiKey.issue(name, Tenant.named(tenant))
        self.stderr.write(f"API key {name!r} of tenant {tenant!r} created. It is shown only once:")
        self.stdout.write(raw_key)
