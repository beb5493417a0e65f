"""Thin Celery tasks around the close and finalization services (idempotent: reruns bill nothing)."""
from __future__ import annotations

from celery import shared_task


@shared_task(acks_late=True)
def periods_close_task(as_of: str | None = None) -> int:
    """The scheduled close (now), or staff's close as of an ISO instant (the admin's "Run a close")."""
    from django.utils.dateparse import parse_datetime

    from .close import periods_close

    return periods_close(as_of=parse_datetime(as_of) if as_of else None).pk


@shared_task(acks_late=True)
def invoices_finalize_due_task() -> int:
    from .close import invoices_finalize_due

    return invoices_finalize_due()


@shared_task(acks_late=True)
def subscriptions_activate_due_task() -> int:
    from apps.subscriptions.services import subscription_activate_due

    return subscription_activate_due()


@shared_task(acks_late=True)
def customer_close_task(customer_id: int) -> tuple[int, int]:
    """Bill one customer now (Lago's immediate invoices: a pay-in-advance start, an upgrade, a termination)."""
    from django.utils import timezone

    from .close import close_customer

    return close_customer(customer_id=customer_id, as_of=timezone.now())
