from django.core.management.base import BaseCommand, CommandError

from apps.core.exceptions import ValidationFailed
from apps.customers.services import service_create


class Command(BaseCommand):
    help = "Create a service and print its new API key alone on the last line (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("code")
        parser.add_argument("--name", required=True)

    def handle(self, *args, code: str, name: str, **options):
        try:
            issued = service_create(code=code, name=name)
        except ValidationFailed:
            raise CommandError(f"service {code!r} already exists; use rotate_service_key") from None
        self.stderr.write(f"Created service {code}. Store this key now; it is not shown again:")
        self.stdout.write(issued.raw_key)
