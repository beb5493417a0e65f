"""`manage.py close_periods [--as-of DATE] [--ranges N]`: run the period close now (staff), here or over the
`close` queue's workers."""
from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone


class Command(BaseCommand):
    help = "Bill every subscription period ended at --as-of (default now). Safe to rerun."

    def add_arguments(self, parser):
        parser.add_argument("--as-of", help="YYYY-MM-DD (end of that day, hub timezone) or an ISO datetime")
        parser.add_argument("--ranges", type=int, default=1,
                            help="split into N ranges billed by the close queue's workers (needs CELERY_BROKER_URL)")

    def handle(self, *args, **options):
        from apps.invoicing.close import periods_close

        as_of = timezone.now()
        raw = options.get("as_of")
        if raw:
            try:
                if len(raw) == 10:
                    day = datetime.fromisoformat(raw).date()
                    as_of = datetime.combine(day, time(23, 59, 59), tzinfo=ZoneInfo(settings.TIME_ZONE))
                else:
                    as_of = datetime.fromisoformat(raw)
                    if as_of.tzinfo is None:
                        as_of = as_of.replace(tzinfo=ZoneInfo(settings.TIME_ZONE))
            except ValueError as exc:
                raise CommandError(f"--as-of: {exc}") from None
        if options["ranges"] > 1:
            from apps.invoicing.close.distributed import close_distributed_start

            if settings.CELERY_TASK_ALWAYS_EAGER:
                raise CommandError("--ranges needs CELERY_BROKER_URL: the ranges are billed by Celery workers")
            run = close_distributed_start(ranges=options["ranges"], as_of=as_of)
            self.stdout.write(f"close run {run.pk} as of {run.as_of.isoformat()}: {run.ranges.count()} ranges sent "
                              f"to the close queue for {run.customers_count} customers")
            return
        run = periods_close(as_of=as_of)
        self.stdout.write(
            f"close run {run.pk} as of {run.as_of.isoformat()}: {run.customers_count} customers, "
            f"{run.invoices_count} invoices, {run.fees_count} fees, {run.failures_count} failures"
        )
        if run.failures_count:
            for outcome in run.outcomes.filter(outcome="failed"):
                self.stderr.write(f"customer {outcome.customer_id}: {outcome.error}")
