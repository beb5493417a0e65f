"""Thin Celery tasks of the ledger. Retries are row-driven (next_attempt_at + the sweeper), not Celery
autoretry, so the schedule survives a lost broker message and shows in the admin."""
from __future__ import annotations

from celery import shared_task
from django.conf import settings


@shared_task(acks_late=True, ignore_result=True)
def ledger_posting_send_task(posting_id: int) -> None:
    from apps.ledger.services import ledger_posting_send

    ledger_posting_send(posting_id=posting_id)


@shared_task(acks_late=True, ignore_result=True)
def ledger_sweep_task() -> None:
    """Post every due pending row (lost messages, backoff retries, a backlog after enabling)."""
    from apps.ledger.services import ledger_post_pending_batch

    if not settings.LEDGER_ENABLED:
        return
    batch_size = int(getattr(settings, "LEDGER_BATCH_SIZE", 500))
    for _ in range(int(getattr(settings, "LEDGER_SWEEP_MAX_BATCHES", 20))):  # bounded per beat tick
        if ledger_post_pending_batch(limit=batch_size).claimed < batch_size:
            return
