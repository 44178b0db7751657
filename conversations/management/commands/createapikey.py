from django.core.management.base import BaseCommand, CommandParser

from conversations.models import ApiKey


class Command(BaseCommand):
    help = "Create an API key for the HTTP/WebSocket APIs and print it (shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="What the key is for, e.g. 'web frontend'.")

    def handle(self, *args: object, name: str, **options: object) -> None:
        _, raw_key = ApiKey.issue(name)
        self.stderr.write(f"API key {name!r} created. It is shown only once:")
        self.stdout.write(raw_key)
