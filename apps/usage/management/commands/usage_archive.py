"""`manage.py usage_archive --month YYYY-MM [--out PATH]`: export a billed month's raw usage rows (gzip CSV, checked
against the manifest written beside it), then detach and drop its partition. `--due` does what the beat's
`usage-archive` does: every billed month past USAGE_ARCHIVE_AFTER_MONTHS (apps/usage/partitions.py)."""
from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Archive one month of billed raw usage rows to gzip CSV and drop its partition. Refused if any is unbilled."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--month", help="YYYY-MM (UTC month)")
        which.add_argument("--due", action="store_true", help="every billed month past USAGE_ARCHIVE_AFTER_MONTHS")
        parser.add_argument("--out", help="file to write (default USAGE_ARCHIVE_DIR/usage_usageevent_pYYYY_MM.csv.gz)")

    def handle(self, *args, **options):
        from apps.usage.partitions import UsageArchiveRefused, usage_month_archive, usage_months_archive_due

        if options["due"]:
            if options.get("out"):
                raise CommandError("--out names one month's file: use it with --month")
            run = usage_months_archive_due()
            for done in run.archived:
                self.stdout.write(f"archived {done.rows} usage rows of {done.month:%Y-%m} to {done.path}")
            for month, reason in {**run.skipped, **run.failed}.items():
                self.stdout.write(f"skipped {month:%Y-%m}: {reason}")
            for month in run.busy:
                self.stdout.write(f"skipped {month:%Y-%m}: another run is archiving it")
            if run.failed:
                raise CommandError(f"{len(run.failed)} month(s) failed")
            return
        try:
            year, month = (int(part) for part in options["month"].split("-"))
            first = date(year, month, 1)
        except ValueError:
            raise CommandError("--month: expected YYYY-MM") from None
        try:
            done = usage_month_archive(month=first, path=options.get("out"))
        except UsageArchiveRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"archived {done.rows} usage rows of {done.month:%Y-%m} to {done.path} "
                          f"(sha256 {done.sha256}); partition dropped")
