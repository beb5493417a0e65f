"""Reads for payments, scoped by the calling service."""
from __future__ import annotations

import uuid

from django.db.models import QuerySet

from apps.core.exceptions import NotFound
from apps.customers.models import Service
from apps.invoicing.models import Invoice

from .models import PaymentAttempt


def invoice_get_for_service(*, service: Service, lago_id) -> Invoice:
    """Return an invoice of a customer the service links to; 404 `invoice_not_found` otherwise."""
    try:
        lago_id = uuid.UUID(str(lago_id))
    except ValueError:
        raise NotFound("invoice") from None
    invoice = (
        Invoice.objects.filter(
            lago_id=lago_id, customer__account_links__service=service, customer__account_links__deleted_at__isnull=True
        )
        .select_related("customer")
        .first()
    )
    if invoice is None:
        raise NotFound("invoice")
    return invoice


def payment_attempt_list(*, invoice: Invoice) -> QuerySet[PaymentAttempt]:
    return PaymentAttempt.objects.filter(invoice=invoice).order_by("attempt_number")
