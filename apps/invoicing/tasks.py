"""Thin Celery tasks around the close and finalization services (idempotent: reruns bill nothing)."""
from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True)
def periods_close_task() -> int:
    from .close import periods_close

    return periods_close().pk


@shared_task(acks_late=True)
def invoices_finalize_due_task() -> int:
    from .close import invoices_finalize_due

    return invoices_finalize_due()


@shared_task(acks_late=True)
def subscriptions_activate_due_task() -> int:
    from apps.subscriptions.services import subscription_activate_due

    return subscription_activate_due()
