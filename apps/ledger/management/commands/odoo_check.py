"""`manage.py odoo_check`: check the Odoo connection and that every mapped reference exists."""
from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.ledger.odoo_client import OdooError
from apps.ledger.services import ledger_mapping_check


class Command(BaseCommand):
    help = ("Check the Odoo connection, the ledger mapping and Odoo's tax rounding; list what is missing or "
            "differs, by name.")

    def handle(self, *args: object, **options: object) -> None:
        try:
            check = ledger_mapping_check()
        except OdooError as exc:
            raise CommandError(f"cannot reach Odoo at {settings.ODOO_URL}: {exc.message}") from None
        self.stdout.write(f"Odoo {check.server} at {settings.ODOO_URL}, database {settings.ODOO_DATABASE}")
        for problem in check.problems:
            self.stdout.write(f"MISSING {problem}")
        for mismatch in check.mismatches:
            self.stdout.write(f"MISMATCH {mismatch}")
        counts = [f"{len(check.problems)} mapping problem(s)"] * bool(check.problems)
        counts += [f"{len(check.mismatches)} setting mismatch(es)"] * bool(check.mismatches)
        if counts:
            raise CommandError(", ".join(counts))
        self.stdout.write(self.style.SUCCESS("mapping OK"))
