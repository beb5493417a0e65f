"""Reads for the migration: import reports, phases, relay state."""
from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from .importer import OUTCOMES, RESOURCES
from .models import ImportIssue, ImportRun, RelayStream, ServicePhase


def service_phase(service_id: int) -> str:
    """The service's phase; a service with no migration row was born on the hub."""
    phase = ServicePhase.objects.filter(service_id=service_id).values_list("phase", flat=True).first()
    return phase or ServicePhase.Phase.HUB


def import_report(run: ImportRun) -> str:
    """The closing table of an import: per resource created / updated / unchanged / skipped / conflict, then the
    reasons of every skipped, conflicting or warned object."""
    header = ("resource", *OUTCOMES)
    rows = [header]
    for resource in RESOURCES:
        counts = run.counts.get(resource, {})
        rows.append((resource, *(str(counts.get(outcome, 0)) for outcome in OUTCOMES)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["", f"Import run {run.pk} of {run.service.code} from {run.api_url}"
             + (" (dry run: nothing written)" if run.dry_run else "") + f": {run.status}"]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)))
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    changed = sum(counts.get(o, 0) for counts in run.counts.values() for o in ("created", "updated"))
    total = sum(sum(counts.values()) for counts in run.counts.values())
    if not changed:
        lines.append(f"Nothing changed: {total} objects read, none created or updated.")
    issues = list(ImportIssue.objects.filter(run=run).order_by("resource", "outcome", "key"))
    if issues:
        lines.append("")
        lines.append("Skipped, conflicts and warnings:")
        lines.extend(f"  {issue.resource} {issue.key}: {issue.outcome}: {issue.reason}" for issue in issues)
    return "\n".join(lines)


@dataclass(frozen=True)
class RelayStatus:
    stream_id: int
    backlog: int  # usage rows accepted and not yet delivered
    lag_seconds: int | None  # age of the oldest row not delivered; None: nothing pending
    failures: int
    last_error: str

    @property
    def lag_text(self) -> str:
        return "—" if self.lag_seconds is None else f"{self.lag_seconds} s"

    @property
    def summary(self) -> str:
        text = f"backlog {self.backlog}, lag {self.lag_text}, {self.failures} failure(s)"
        return f"{text}; last error: {self.last_error[:80]}" if self.last_error else text


def relay_status(service_id: int, *, stream: RelayStream | None = None) -> RelayStatus | None:
    """The newest relay stream of a service, measured now (backlog counted up to the committed usage rows)."""
    stream = stream or RelayStream.objects.filter(service_id=service_id).order_by("-opened_at").first()
    if stream is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), min(created_at) FROM usage_usageevent WHERE id > %s AND (%s::bigint IS NULL OR id <= %s)"
            " AND service_id = %s",
            [stream.delivered_through_id, stream.until_event_id, stream.until_event_id, service_id],
        )
        backlog, oldest = cursor.fetchone()
    lag = int((timezone.now() - oldest).total_seconds()) if oldest else None
    return RelayStatus(stream.pk, backlog, lag, stream.failures.filter(resolved_at__isnull=True).count(),
                       stream.last_error)
