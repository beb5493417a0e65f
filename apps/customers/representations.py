"""Lago's Customer body: a plain function of an account link (a service's view of the customer), used by the API
and by webhook payloads."""
from __future__ import annotations

from apps.core.representations import ts

from .models import AccountLink, Organization


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


def _or_none(value: str) -> str | None:
    return value or None


def organization_out(organization: Organization, *, settings_values: dict, webhook_urls: list[str]) -> dict:
    """Lago's Organization; `settings_values`: `services.organization_settings()`; `webhook_urls`: the calling
    service's endpoints (another service's are not its to see)."""
    return {
        "lago_id": str(organization.lago_id),
        "name": organization.name,
        "created_at": ts(organization.created_at),
        "webhook_url": webhook_urls[0] if webhook_urls else None,
        "webhook_urls": webhook_urls,
        "country": _or_none(organization.country),
        "default_currency": settings_values["default_currency"],
        "address_line1": _or_none(organization.address_line1),
        "address_line2": _or_none(organization.address_line2),
        "state": _or_none(organization.state),
        "zipcode": _or_none(organization.zipcode),
        "email": _or_none(organization.email),
        "city": _or_none(organization.city),
        "legal_name": _or_none(organization.legal_name),
        "legal_number": _or_none(organization.legal_number),
        "document_numbering": "per_organization",  # one series for all invoices (apps/invoicing/numbering.py)
        "document_number_prefix": settings_values["document_number_prefix"],
        "net_payment_term": settings_values["net_payment_term"],
        "tax_identification_number": _or_none(organization.tax_identification_number),
        "timezone": settings_values["timezone"],
        "email_settings": [],  # the hub sends no billing e-mail; Stripe and the apps do
        "billing_configuration": {
            "invoice_footer": _or_none(organization.invoice_footer),
            "invoice_grace_period": settings_values["invoice_grace_period"],
            "document_locale": organization.document_locale,
        },
        "taxes": [],  # Canadian sales taxes apply by the customer's province, none by default
        "finalize_zero_amount_invoice": settings_values["finalize_zero_amount_invoice"],
        "events_store": "postgres",
    }


def billing_entity_out(organization: Organization, *, settings_values: dict, detail: bool = False) -> dict:
    """Lago's BillingEntity: the hub bills as one, the organization itself (`detail`: GET one and PUT add Lago's
    taxes and invoice custom sections, none here)."""
    body = {
        "lago_id": str(organization.lago_id),
        "code": settings_values["code"],
        "name": organization.name,
        "default_currency": settings_values["default_currency"],
        "document_locale": organization.document_locale,
        "document_numbering": "per_billing_entity",
        "document_number_prefix": settings_values["document_number_prefix"],
        "finalize_zero_amount_invoice": settings_values["finalize_zero_amount_invoice"],
        "invoice_footer": _or_none(organization.invoice_footer),
        "invoice_grace_period": settings_values["invoice_grace_period"],
        "subscription_invoice_issuing_date_anchor": "next_period_start",
        "subscription_invoice_issuing_date_adjustment": "align_with_finalization_date",
        "is_default": True,
        "net_payment_term": settings_values["net_payment_term"],
        "address_line1": _or_none(organization.address_line1),
        "address_line2": _or_none(organization.address_line2),
        "phone": None,
        "city": _or_none(organization.city),
        "state": _or_none(organization.state),
        "country": _or_none(organization.country),
        "zipcode": _or_none(organization.zipcode),
        "email": _or_none(organization.email),
        "legal_name": _or_none(organization.legal_name),
        "legal_number": _or_none(organization.legal_number),
        "tax_identification_number": _or_none(organization.tax_identification_number),
        "timezone": settings_values["timezone"],
        "email_settings": [],
        "eu_tax_management": False,
        "einvoicing": False,
        "logo_url": None,
        "created_at": ts(organization.created_at),
        "updated_at": ts(organization.updated_at),
    }
    if detail:
        body |= {"taxes": [], "selected_invoice_custom_sections": []}
    return body
