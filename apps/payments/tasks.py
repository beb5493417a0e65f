"""Thin Celery tasks: ids in, one service call."""
from __future__ import annotations

from celery import shared_task

from . import services
from .stripe_gateway import StripeUnavailable


@shared_task(autoretry_for=(StripeUnavailable,), retry_backoff=True, max_retries=8, acks_late=True)
def payment_collect_for_invoice_task(invoice_id: int) -> None:
    services.payment_collect_for_invoice(invoice_id=invoice_id)


@shared_task(autoretry_for=(StripeUnavailable,), retry_backoff=True, max_retries=8, acks_late=True)
def credit_note_refund_task(credit_note_id: int) -> None:
    services.credit_note_refund(credit_note_id=credit_note_id)


@shared_task(acks_late=True)
def payment_pending_sweep_task() -> None:
    services.payment_pending_sweep()


@shared_task(acks_late=True)
def payment_retry_due_task() -> None:
    services.payment_retry_due()


@shared_task(autoretry_for=(StripeUnavailable,), retry_backoff=True, max_retries=8, acks_late=True)
def payment_checkout_close_task(attempt_ids: list[int]) -> None:
    services.payment_checkout_close(attempt_ids=attempt_ids)


@shared_task(autoretry_for=(StripeUnavailable,), retry_backoff=True, max_retries=8, acks_late=True)
def customer_credit_refund_task(credit_id: int) -> None:
    services.customer_credit_refund(credit_id=credit_id)
