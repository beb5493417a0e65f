from __future__ import annotations

from celery import shared_task

from .services import usage_rollup_advance


@shared_task(acks_late=True)
def usage_rollup_advance_task() -> None:
    """Fold new usage rows into the daily rollup (beat: every minute; safe to overlap)."""
    usage_rollup_advance()


@shared_task(acks_late=True)
def usage_partitions_ensure_task() -> None:
    """Create the coming months' usage partitions (beat: daily; idempotent, safe to overlap)."""
    from .partitions import usage_partitions_ensure

    usage_partitions_ensure()


@shared_task(acks_late=True)
def usage_months_archive_due_task() -> None:
    """Archive the billed months past USAGE_ARCHIVE_AFTER_MONTHS (beat: daily; idempotent, safe to overlap)."""
    from .partitions import usage_months_archive_due

    usage_months_archive_due()
