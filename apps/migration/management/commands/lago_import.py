"""manage.py lago_import --service CODE --url URL --api-key KEY [--dry-run] [--restart] [--per-page N]"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.customers.models import Service
from apps.migration.importer import ImportRefused, lago_import
from apps.migration.lago_client import LagoError
from apps.migration.selectors import import_report


class Command(BaseCommand):
    help = "Import a Lago organisation into a service (idempotent; resumes a crashed run)."

    def add_arguments(self, parser):
        parser.add_argument("--service", required=True, help="the hub service code, e.g. nexacloud")
        parser.add_argument("--url", required=True, help="Lago's root URL (without /api/v1)")
        parser.add_argument("--api-key", required=True)
        parser.add_argument("--dry-run", action="store_true", help="report what would change; write nothing")
        parser.add_argument("--restart", action="store_true", help="ignore a crashed run's checkpoints")
        parser.add_argument("--per-page", type=int, default=100)

    def handle(self, *args, **options):
        try:
            service = Service.objects.get(code=options["service"])
        except Service.DoesNotExist:
            raise CommandError(f"no service {options['service']!r}") from None
        try:
            run = lago_import(
                service=service, api_url=options["url"], api_key=options["api_key"], dry_run=options["dry_run"],
                restart=options["restart"], per_page=options["per_page"], actor="manage.py lago_import",
                progress=lambda line: self.stdout.write(f"  {line}"),
            )
        except (ImportRefused, LagoError) as exc:
            raise CommandError(f"{exc} (rerun the same command to resume)") from None
        self.stdout.write(import_report(run))
