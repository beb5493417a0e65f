"""Outbound webhooks (apps.webhooks) about payments, rendered in Lago's shapes.

One event per service linked to the customer, each carrying that service's external id.
Call inside the transaction that made the change.
"""
from __future__ import annotations

from apps.customers.models import AccountLink, Customer
from apps.invoicing.models import Invoice


def _links(customer: Customer):
    return AccountLink.objects.filter(customer=customer, deleted_at__isnull=True).select_related("service", "customer")


def _record(event_type: str, object_type: str, payload: dict, service_id: int) -> None:
    from apps.webhooks.services import webhook_event_record

    webhook_event_record(event_type=event_type, object_type=object_type, payload_object=payload, service_ids=[service_id])


def _invoice_payload(invoice: Invoice, link: AccountLink) -> dict:
    try:  # the invoice API serializer, once the invoicing issue provides it
        from apps.api.serializers.invoices import invoice_out
    except ImportError:
        invoice_out = None
    if invoice_out is not None:
        return invoice_out(invoice)
    return {
        "lago_id": str(invoice.lago_id),
        "number": invoice.number,
        "status": invoice.status,
        "payment_status": invoice.payment_status,
        "currency": invoice.currency,
        "total_amount_cents": invoice.total_amount_cents,
        "total_paid_amount_cents": invoice.total_paid_amount_cents,
        "total_due_amount_cents": invoice.total_due_amount_cents,
        "payment_url": invoice.payment_url or None,
        "customer": {"lago_id": str(invoice.customer.lago_id), "external_id": link.external_id},
    }


def invoice_payment_status_updated(invoice: Invoice) -> None:
    for link in _links(invoice.customer):
        _record("invoice.payment_status_updated", "invoice", _invoice_payload(invoice, link), link.service_id)


def invoice_payment_failure(invoice: Invoice, *, stripe_customer_id: str, error_code: str, message: str) -> None:
    for link in _links(invoice.customer):
        payload = {
            "lago_invoice_id": str(invoice.lago_id),
            "lago_customer_id": str(invoice.customer.lago_id),
            "external_customer_id": link.external_id,
            "provider_customer_id": stripe_customer_id,
            "payment_provider": "stripe",
            "payment_provider_code": "stripe",
            "provider_error": {"message": message, "error_code": error_code},
        }
        _record("invoice.payment_failure", "payment_provider_invoice_payment_error", payload, link.service_id)


def customer_payment_provider_created(customer: Customer) -> None:
    from apps.api.serializers.customers import customer_out

    for link in _links(customer):
        _record("customer.payment_provider_created", "customer", customer_out(link), link.service_id)


def customer_checkout_url_generated(customer: Customer, *, checkout_url: str) -> None:
    for link in _links(customer):
        payload = {
            "lago_customer_id": str(customer.lago_id),
            "external_customer_id": link.external_id,
            "payment_provider": "stripe",
            "payment_provider_code": "stripe",
            "checkout_url": checkout_url,
        }
        _record("customer.checkout_url_generated", "payment_provider_customer_checkout_url", payload, link.service_id)
