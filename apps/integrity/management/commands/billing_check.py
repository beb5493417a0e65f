"""`manage.py billing_check [--customer ID ...] [--json] [--odoo] [--record]`: run the billing invariants I1-I6.

Exit status 1 when any invariant is broken, 0 otherwise.
"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from apps.customers.models import Customer
from apps.integrity.invariants import CENTS, INVARIANTS, Violation
from apps.integrity.services import billing_check_run

TITLES = {
    "I1": "balances (invoiced − credited − paid + refunded = owed)",
    "I2": "usage billed exactly once",
    "I3": "no negative finalized invoice",
    "I4": "taxes per line and invoice totals",
    "I5": "gapless invoice numbers",
    "I6": "Stripe payments recorded",
}


class Command(BaseCommand):
    help = "Check the billing invariants I1-I6 on this database; exit 1 if any is broken."

    def add_arguments(self, parser):
        parser.add_argument("--customer", action="append", default=[], metavar="ID",
                            help="only this customer (hub id or external id); repeatable")
        parser.add_argument("--json", action="store_true", help="print the violations and summary as JSON")
        parser.add_argument("--odoo", action="store_true", help="also compare balances with the Odoo receivable")
        parser.add_argument("--record", action="store_true", help="store the run for staff (admin)")

    def handle(self, *args, **options):
        customer_ids = self._customers(options["customer"]) if options["customer"] else None
        result = billing_check_run(customer_ids=customer_ids, record=options["record"], odoo=options["odoo"])
        violations, counts = result.violations, result.counts
        if options["json"]:
            self.stdout.write(json.dumps({
                "ok": not violations, "summary": counts, "note": result.note,
                "run_id": result.run.pk if result.run else None,
                "violations": [violation.as_dict() for violation in violations],
            }, indent=2, default=str))
        else:
            names = dict(Customer.objects.filter(pk__in={v.customer_id for v in violations if v.customer_id})
                         .values_list("pk", "external_id"))
            for violation in violations:
                self.stdout.write(self._line(violation, names))
            for code in INVARIANTS:
                status = "OK" if not counts[code] else f"{counts[code]} violation(s)"
                self.stdout.write(f"{code} {TITLES[code]}: {status}")
            if result.note:
                self.stderr.write(result.note)
        if violations:
            raise CommandError(f"{len(violations)} violation(s) of the billing invariants", returncode=1)

    def _customers(self, values: list[str]) -> list[int]:
        ids: list[int] = []
        for value in values:
            found = Customer.objects.filter(pk=int(value)) if value.isdigit() else Customer.objects.none()
            found = found or Customer.objects.filter(external_id=value)
            pks = list(found.values_list("pk", flat=True))
            if not pks:
                raise CommandError(f"--customer {value}: no such customer")
            ids.extend(pks)
        return ids

    @staticmethod
    def _line(violation: Violation, names: dict[int, str]) -> str:
        parts = [f"{violation.code} {violation.rule}"]
        if violation.customer_id is not None:
            parts.append(f"customer {violation.customer_id} ({names.get(violation.customer_id, '?')})")
        if violation.invoice_id is not None:
            parts.append(f"invoice {violation.invoice_number or '(no number)'} (id {violation.invoice_id})")
        if violation.expected is not None or violation.actual is not None:
            unit = violation.currency if violation.unit == CENTS else violation.unit
            unit = f"{unit} minor units" if violation.unit == CENTS else unit
            parts.append(f"expected {violation.expected} actual {violation.actual} {unit}".rstrip())
        return " | ".join(parts) + f": {violation.message}"
