"""manage.py reconcile --service CODE --period YYYY-MM [--csv FILE]"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.core.exceptions import BillingError
from apps.customers.models import Service
from apps.migration.lago_client import LagoError
from apps.migration.reconcile import reconcile, reconciliation_csv


class Command(BaseCommand):
    help = "Compare a service's invoices issued in a month with Lago's (per fee, taxes per rate, totals)."

    def add_arguments(self, parser):
        parser.add_argument("--service", required=True)
        parser.add_argument("--period", required=True, help="YYYY-MM of the invoices' issuing date")
        parser.add_argument("--csv", help="also write the differences to this CSV file")

    def handle(self, *args, **options):
        try:
            service = Service.objects.get(code=options["service"])
        except Service.DoesNotExist:
            raise CommandError(f"no service {options['service']!r}") from None
        try:
            run = reconcile(service=service, period=options["period"], actor="manage.py reconcile")
        except (BillingError, LagoError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(run.summary + f" ({run.differences_count} difference(s))")
        for line in run.lines.filter(matches=False).prefetch_related("differences"):
            for difference in line.differences.all():
                self.stdout.write(f"  {line.external_customer_id} {line.issuing_date} {difference.kind} "
                                  f"{difference.item}: hub {difference.hub_value or '-'}, Lago "
                                  f"{difference.lago_value or '-'}")
        if options["csv"]:
            with open(options["csv"], "w", newline="") as handle:
                handle.write(reconciliation_csv([run]))
        if run.differing_count:
            raise SystemExit(1)  # scripts and runbooks can stop on a difference
