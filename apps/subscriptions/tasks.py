from __future__ import annotations

from celery import shared_task

from .services import subscription_changes_prune


@shared_task(acks_late=True)
def subscription_changes_prune_task() -> None:
    """Trim the subscription change log that ingest's cached lookups check (beat: every 10 minutes)."""
    subscription_changes_prune()
