"""Reads for payments, scoped by the calling service."""
from __future__ import annotations

import uuid

from django.db.models import QuerySet

from apps.core.exceptions import NotFound
from apps.customers.models import Service
from apps.invoicing.models import Invoice

from .models import Payment, PaymentAttempt, PaymentReceipt, PaymentRequest


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


def payment_list(*, service: Service, external_customer_id: str | None = None,
                 invoice_id: str | None = None) -> QuerySet[Payment]:
    """The payments of invoices the service may see (Stripe's and manual ones), newest first; `invoice_id` not a
    uuid matches nothing."""
    from apps.invoicing.selectors import invoice_list

    queryset = Payment.objects.filter(invoice__in=invoice_list(service=service, external_customer_id=external_customer_id))
    if invoice_id:
        try:
            queryset = queryset.filter(invoice__lago_id=uuid.UUID(str(invoice_id)))
        except ValueError:
            return queryset.none()
    return queryset.select_related("invoice", "attempt", "receipt").order_by("-created_at", "-id")


def payment_get(*, service: Service, lago_id) -> Payment:
    """One payment of an invoice the service may see; 404 `payment_not_found` otherwise."""
    try:
        return payment_list(service=service).get(lago_id=uuid.UUID(str(lago_id)))
    except (Payment.DoesNotExist, ValueError):
        raise NotFound("payment") from None


def payment_receipt_list(*, service: Service, invoice_id: str | None = None) -> QuerySet[PaymentReceipt]:
    return (PaymentReceipt.objects.filter(payment__in=payment_list(service=service, invoice_id=invoice_id))
            .select_related("payment__invoice", "payment__attempt").order_by("-created_at", "-id"))


def payment_receipt_get(*, service: Service, lago_id) -> PaymentReceipt:
    try:
        return payment_receipt_list(service=service).get(lago_id=uuid.UUID(str(lago_id)))
    except (PaymentReceipt.DoesNotExist, ValueError):
        raise NotFound("payment_receipt") from None


def payment_method_lago_id(stripe_id: str) -> uuid.UUID:
    """Lago's uuid of a Stripe payment method: derived from its id, so every rendering gives the same one."""
    return uuid.uuid5(_PAYMENT_METHOD_NS, stripe_id)


_PAYMENT_METHOD_NS = uuid.UUID("0c6b3b7e-5f0e-4d38-9a7e-3c1f2b9d8e41")


def payment_method_list(*, customer) -> list:
    """The customer's saved Stripe payment methods, from dj-stripe's mirror, oldest first; none without a Stripe
    customer."""
    from djstripe.models import PaymentMethod

    from .models import StripeCustomer

    account = StripeCustomer.objects.filter(customer=customer).first()
    if account is None:
        return []
    return list(PaymentMethod.objects.filter(customer__id=account.stripe_customer_id).order_by("created", "djstripe_id"))


def payment_method_get(*, customer, lago_id) -> object:
    """One of the customer's payment methods by its Lago uuid; 404 `payment_method_not_found` otherwise."""
    for method in payment_method_list(customer=customer):
        if str(payment_method_lago_id(method.id)) == str(lago_id):
            return method
    raise NotFound("payment_method")


def payment_request_list(*, service: Service, external_customer_id: str | None = None,
                         payment_status: str | None = None, currency: str | None = None) -> QuerySet[PaymentRequest]:
    """The payment requests the service made (through its own view of the customer), newest first."""
    queryset = PaymentRequest.objects.filter(account_link__service=service)
    if external_customer_id:
        queryset = queryset.filter(account_link__external_id=external_customer_id, account_link__deleted_at__isnull=True)
    if payment_status:
        queryset = queryset.filter(payment_status=payment_status)
    if currency:
        queryset = queryset.filter(currency=currency)
    return queryset.select_related("account_link__service", "account_link__customer").order_by("-created_at", "-id")


def payment_request_get(*, service: Service, lago_id) -> PaymentRequest:
    try:
        return payment_request_list(service=service).get(lago_id=uuid.UUID(str(lago_id)))
    except (PaymentRequest.DoesNotExist, ValueError):
        raise NotFound("payment_request") from None
