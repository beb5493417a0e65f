"""Outbound webhooks (apps.webhooks) about payments, rendered in Lago's shapes.

Customer events: one per service linked to the customer. Invoice events: one per service whose lines the
invoice bills (`invoice_service_ids`), so a service sharing the customer but not the invoice hears nothing.
Each carries that service's external id. Call inside the transaction that made the change.
"""
from __future__ import annotations

from apps.customers.models import AccountLink, Customer
from apps.customers.representations import customer_out
from apps.invoicing.models import Invoice
from apps.invoicing.representations import invoice_out
from apps.invoicing.selectors import invoice_service_ids


def _links(customer: Customer):
    return AccountLink.objects.filter(customer=customer, deleted_at__isnull=True).select_related("service", "customer")


def _invoice_links(invoice: Invoice):
    service_ids = invoice_service_ids(invoice)
    if not service_ids:
        # No line bills a service (an invoice written outside the close, one-off and credit paths):
        # no service is more entitled than another, so every linked one hears, as before the narrowing.
        return _links(invoice.customer)
    return _links(invoice.customer).filter(service_id__in=service_ids)


def _record(event_type: str, object_type: str, payload: dict, service_id: int) -> None:
    from apps.webhooks.services import webhook_event_record

    webhook_event_record(event_type=event_type, object_type=object_type, payload_object=payload, service_ids=[service_id])


def _invoice_payload(invoice: Invoice, link: AccountLink) -> dict:
    return invoice_out(invoice, service=link.service)  # the customer as this service knows it


def invoice_payment_status_updated(invoice: Invoice) -> None:
    for link in _invoice_links(invoice):
        _record("invoice.payment_status_updated", "invoice", _invoice_payload(invoice, link), link.service_id)


def invoice_payment_failure(invoice: Invoice, *, stripe_customer_id: str, error_code: str, message: str) -> None:
    for link in _invoice_links(invoice):
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


def payment_request_event(request, event_type: str) -> None:
    """`payment_request.created` / `.payment_status_updated` to the service that asked, in its view."""
    from .representations import payment_request_out

    _record(event_type, "payment_request", payment_request_out(request), request.account_link.service_id)
