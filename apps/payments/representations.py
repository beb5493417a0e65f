"""Lago's Payment and PaymentReceipt bodies (API and webhooks), for a service's view of the customer."""
from __future__ import annotations

from apps.core.representations import ts
from apps.customers.models import AccountLink, Service

from .models import Payment, PaymentReceipt


def _link(payment: Payment, service: Service | None) -> AccountLink | None:
    links = AccountLink.objects.filter(customer_id=payment.invoice.customer_id)
    if service is not None:
        links = links.filter(service=service)
    return links.filter(deleted_at__isnull=True).order_by("id").first() or links.order_by("-id").first()


def payment_out(payment: Payment, *, service: Service | None = None) -> dict:
    """Lago's PaymentObject (`V1::PaymentSerializer`). A manual payment has no provider fields (null, as Lago's
    `payment_provider&.code`); a Stripe one names its PaymentIntent and Stripe customer."""
    invoice, attempt = payment.invoice, payment.attempt
    link = _link(payment, service)
    stripe = payment.payment_type == Payment.PaymentType.PROVIDER
    return {
        "lago_id": str(payment.lago_id),
        "lago_customer_id": str(link.lago_id) if link else None,  # the caller's own id of the customer
        "external_customer_id": link.external_id if link else None,
        "invoice_ids": [str(invoice.lago_id)],
        "invoice_numbers": [invoice.number],
        "lago_payable_id": str(invoice.lago_id),
        "payable_type": "Invoice",
        "amount_cents": payment.amount_cents,
        "amount_currency": payment.currency,
        "status": "succeeded",  # a Payment row is money received (Stripe's PaymentIntent status, or manual)
        "payment_status": "succeeded",
        "type": payment.payment_type,
        # Lago sends null for a provider payment; its document and lago-python-client both require a string.
        "reference": payment.reference,
        "payment_provider_code": "stripe" if stripe else None,
        "payment_provider_type": "stripe" if stripe else None,
        "external_payment_id": payment.stripe_payment_intent_id or None,
        "provider_payment_id": payment.stripe_payment_intent_id or None,
        "provider_customer_id": (attempt.stripe_customer_id or None) if stripe and attempt else None,
        "next_action": {} if stripe else None,
        "created_at": ts(payment.created_at),
    }


def payment_receipt_out(receipt: PaymentReceipt, *, service: Service | None = None) -> dict:
    """Lago's PaymentReceiptObject; the hub renders no receipt PDF (`file_url` null)."""
    return {
        "lago_id": str(receipt.lago_id),
        "number": receipt.number,
        "file_url": None,
        "xml_url": None,
        "payment": payment_out(receipt.payment, service=service),
        "created_at": ts(receipt.created_at),
    }


def payment_method_out(method, *, default_id: str) -> dict:
    """Lago's PaymentMethodObject for a Stripe payment method of dj-stripe's mirror."""
    from .selectors import payment_method_lago_id

    return {
        "lago_id": str(payment_method_lago_id(method.id)),
        "is_default": method.id == default_id,
        "payment_provider_code": "stripe",
        "payment_provider_name": "Stripe",
        "payment_provider_type": "stripe",
        "provider_method_id": method.id,
        "created_at": ts(method.created or method.djstripe_created),
    }


def payment_request_out(request) -> dict:
    """Lago's PaymentRequestObject, as the service that asked sees it; `payment_url` (not Lago's) is the Stripe
    Checkout link paying it while it is pending."""
    from apps.customers.representations import customer_out
    from apps.invoicing.representations import invoice_out

    service = request.account_link.service
    return {
        "lago_id": str(request.lago_id),
        "email": request.email,
        "amount_cents": request.amount_cents,
        "amount_currency": request.currency,
        "payment_status": request.payment_status,
        "created_at": ts(request.created_at),
        "customer": customer_out(request.account_link),
        "invoices": [invoice_out(item.invoice, service=service, with_details=False)
                     for item in request.items.select_related("invoice").order_by("invoice_id")],
        "payment_url": request.checkout_url if request.payment_status == "pending" else None,
    }
