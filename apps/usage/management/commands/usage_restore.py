"""`manage.py usage_restore PATH`: load a `usage_archive` file back into its month's partition."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Restore a month archived by usage_archive (gzip CSV) into the usage table."

    def add_arguments(self, parser):
        parser.add_argument("path")

    def handle(self, *args, **options):
        from apps.usage.partitions import UsageArchiveRefused, usage_month_restore

        try:
            done = usage_month_restore(path=options["path"])
        except (UsageArchiveRefused, OSError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"restored {done.rows} usage rows of {done.month:%Y-%m} "
                          f"({done.moved_from_default} more moved from the DEFAULT partition)")
