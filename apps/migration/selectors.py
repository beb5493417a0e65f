"""Reads for the migration: import reports, phases, relay state."""
from __future__ import annotations

from .importer import OUTCOMES, RESOURCES
from .models import ImportIssue, ImportRun, ServicePhase


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
