from django.core.management.base import BaseCommand, CommandError

from apps.customers.models import Service
from apps.customers.services import service_rotate_key


class Command(BaseCommand):
    help = "Replace a service's API key (the old one stops working) and print the new key on the last line."

    def add_arguments(self, parser):
        parser.add_argument("code")

    def handle(self, *args, code: str, **options):
        service = Service.objects.filter(code=code).first()
        if service is None:
            raise CommandError(f"no service {code!r}")
        issued = service_rotate_key(service_id=service.pk)
        self.stderr.write(f"Rotated the key of {code}; the previous key no longer works:")
        self.stdout.write(issued.raw_key)
