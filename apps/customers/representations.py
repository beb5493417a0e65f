"""Lago's Customer body: a plain function of an account link (a service's view of the customer), used by the API
and by webhook payloads."""
from __future__ import annotations

from apps.core.representations import ts

from .models import AccountLink


def customer_out(link: AccountLink) -> dict:
    customer = link.customer
    return {
        "lago_id": str(link.lago_id),
        "external_id": link.external_id,
        "sequential_id": customer.pk,
        "slug": f"NEXA-{customer.pk:06d}",
        "created_at": ts(link.created_at),
        "updated_at": ts(max(link.updated_at, customer.updated_at)),
        "applicable_timezone": customer.applicable_timezone,
        "name": customer.name or None,
        "firstname": customer.firstname or None,
        "lastname": customer.lastname or None,
        "legal_name": customer.legal_name or None,
        "legal_number": customer.legal_number or None,
        "tax_identification_number": customer.tax_identification_number or None,
        "customer_type": customer.customer_type or None,
        "account_type": "customer",
        "email": customer.email or None,
        "phone": customer.phone or None,
        "url": customer.url or None,
        "address_line1": customer.address_line1 or None,
        "address_line2": customer.address_line2 or None,
        "city": customer.city or None,
        "zipcode": customer.zipcode or None,
        "state": customer.state or None,
        "country": customer.country or None,
        "currency": customer.currency or None,
        "timezone": customer.timezone or None,
        "net_payment_term": customer.net_payment_term,
        "billing_configuration": {
            "invoice_grace_period": customer.invoice_grace_period,
            "payment_provider": "stripe",
            "document_locale": "en",
        },
        "shipping_address": {},
        "metadata": [
            {"lago_id": None, "key": item.get("key"), "value": item.get("value"),
             "display_in_invoice": item.get("display_in_invoice", False), "created_at": ts(customer.created_at)}
            for item in customer.metadata
        ],
        "taxes": [],
        "integration_customers": [],
        "error_details": [],
    }
