"""`manage.py usage_archive --month YYYY-MM [--out PATH]`: export a billed month's raw usage rows (gzip CSV), then
detach and drop its partition (apps/usage/partitions.py)."""
from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Archive one month of billed raw usage rows to gzip CSV and drop its partition. Refused if any is unbilled."

    def add_arguments(self, parser):
        parser.add_argument("--month", required=True, help="YYYY-MM (UTC month)")
        parser.add_argument("--out", help="file to write (default USAGE_ARCHIVE_DIR/usage_usageevent_pYYYY_MM.csv.gz)")

    def handle(self, *args, **options):
        from apps.usage.partitions import UsageArchiveRefused, usage_month_archive

        try:
            year, month = (int(part) for part in options["month"].split("-"))
            first = date(year, month, 1)
        except ValueError:
            raise CommandError("--month: expected YYYY-MM") from None
        try:
            done = usage_month_archive(month=first, path=options.get("out"))
        except UsageArchiveRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"archived {done.rows} usage rows of {done.month:%Y-%m} to {done.path}; partition dropped")
