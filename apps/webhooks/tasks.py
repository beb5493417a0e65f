"""Thin Celery tasks; decisions (claims, retries, backoff) live in services."""
from __future__ import annotations

from celery import shared_task

from .services import webhook_delivery_send, webhook_delivery_sweep


@shared_task(acks_late=True, ignore_result=True)
def webhook_delivery_send_task(delivery_id: int) -> None:
    # No autoretry: a failed POST becomes a `retrying` row with next_attempt_at, which the sweep enqueues.
    webhook_delivery_send(delivery_id=delivery_id)


@shared_task(ignore_result=True)
def webhook_delivery_sweep_task() -> None:
    webhook_delivery_sweep()
