"""`manage.py odoo_check`: check the Odoo connection and that every mapped reference exists."""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.ledger.odoo_client import OdooError
from apps.ledger.services import ledger_mapping_check


class Command(BaseCommand):
    help = "Check the Odoo connection and the ledger mapping; list what is missing, by name."

    def handle(self, *args: object, **options: object) -> None:
        try:
            check = ledger_mapping_check()
        except OdooError as exc:
            raise CommandError(f"cannot reach Odoo at {settings.ODOO_URL}: {exc.message}") from None
        self.stdout.write(f"Odoo {check.server} at {settings.ODOO_URL}, database {settings.ODOO_DATABASE}")
        for problem in check.problems:
            self.stdout.write(f"MISSING {problem}")
        if check.problems:
            raise CommandError(f"{len(check.problems)} mapping problem(s)")
        self.stdout.write(self.style.SUCCESS("mapping OK"))
