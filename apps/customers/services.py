"""Writes for services (API keys), customers and their account links."""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.exceptions import Forbidden, ValidationFailed

from .models import AccountLink, Customer, Organization, Service

API_KEY_PREFIX = "nexa_"


def api_key_hash(raw_key: str) -> str:
    """Return the SHA-256 hex digest under which a key is stored."""
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def _new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class IssuedKey:
    service: Service
    raw_key: str  # shown once; never stored


@transaction.atomic
def service_create(*, code: str, name: str) -> IssuedKey:
    """Create a service and return its first API key (the only time it is visible)."""
    if Service.objects.filter(code=code).exists():
        raise ValidationFailed("service code taken", details={"code": ["value_already_exist"]})
    raw_key = _new_api_key()
    service = Service.objects.create(
        code=code, name=name, api_key_hash=api_key_hash(raw_key), api_key_prefix=raw_key[:12]
    )
    return IssuedKey(service=service, raw_key=raw_key)


@transaction.atomic
def service_rotate_key(*, service_id: int) -> IssuedKey:
    """Replace a service's key; the old one stops working when this commits."""
    service = Service.objects.select_for_update().get(pk=service_id)
    raw_key = _new_api_key()
    service.api_key_hash = api_key_hash(raw_key)
    service.api_key_prefix = raw_key[:12]
    service.api_key_rotated_at = timezone.now()
    service.save(update_fields=["api_key_hash", "api_key_prefix", "api_key_rotated_at", "updated_at"])
    return IssuedKey(service=service, raw_key=raw_key)


CUSTOMER_FIELDS = (
    "name",
    "firstname",
    "lastname",
    "legal_name",
    "legal_number",
    "tax_identification_number",
    "customer_type",
    "email",
    "phone",
    "url",
    "address_line1",
    "address_line2",
    "city",
    "zipcode",
    "state",
    "country",
    "currency",
    "timezone",
    "net_payment_term",
    "invoice_grace_period",
    "metadata",
)


def _hub_reference(*, service: Service, external_id: str) -> str:
    return f"{service.code}:{external_id}"


@transaction.atomic
def customer_upsert(*, service: Service, external_id: str, attributes: dict) -> AccountLink:
    """Create or update the customer a service knows as `external_id` (Lago's POST /customers).

    `attributes` holds validated values for CUSTOMER_FIELDS; absent keys are left unchanged.
    Returns the service's account link (the API's view of the customer).
    """
    unknown = set(attributes) - set(CUSTOMER_FIELDS)
    if unknown:
        raise ValueError(f"unknown customer attributes: {sorted(unknown)}")
    link = (
        AccountLink.objects.select_for_update()
        .select_related("customer")
        .filter(service=service, external_id=external_id, deleted_at__isnull=True)
        .first()
    )
    if link is None:
        reference = _hub_reference(service=service, external_id=external_id)
        customer, _ = Customer.objects.get_or_create(external_id=reference)
        try:
            with transaction.atomic():
                link = AccountLink.objects.create(service=service, customer=customer, external_id=external_id)
        except IntegrityError:
            # A concurrent request created the same link first: update that one.
            link = AccountLink.objects.select_for_update().select_related("customer").get(
                service=service, external_id=external_id, deleted_at__isnull=True
            )
    customer = link.customer
    changed = [field for field, value in attributes.items() if getattr(customer, field) != value]
    for field in changed:
        setattr(customer, field, attributes[field])
    if changed:
        customer.save(update_fields=[*changed, "updated_at"])
    return link


@transaction.atomic
def account_link_create(*, service: Service, customer: Customer, external_id: str) -> AccountLink:
    """Link an existing customer to a service under the service's external id (staff use)."""
    if AccountLink.objects.filter(service=service, external_id=external_id, deleted_at__isnull=True).exists():
        raise ValidationFailed("link exists", details={"external_id": ["value_already_exist"]})
    return AccountLink.objects.create(service=service, customer=customer, external_id=external_id)


def organization_settings() -> dict:
    """What Lago keeps on the organization and the hub keeps in its settings (read-only through the API)."""
    return {
        "code": settings.BILLING_ENTITY_CODE,
        "default_currency": settings.DEFAULT_CURRENCY,
        "timezone": settings.TIME_ZONE,
        "invoice_grace_period": settings.INVOICE_GRACE_PERIOD_DAYS,
        "net_payment_term": 0,  # each customer's own (Customer.net_payment_term), 0 unless set
        "document_number_prefix": settings.INVOICE_NUMBER_PREFIX,
        "finalize_zero_amount_invoice": True,  # the close finalizes an invoice of 0 like any other
    }


_COUNTRIES = {"canada": "CA", "united states": "US", "usa": "US"}


def organization_defaults() -> dict:
    """The organization as settings describe it (NEXA_LEGAL_NAME, NEXA_ADDRESS, NEXA_HST_NUMBER), in Lago's fields:
    "100 King Street West, Toronto, ON M5X 1A9, Canada" split into line, city, province, postal code and country; an
    address of another shape is kept whole as its first line. Migration customers 0003 seeds the row the same way."""
    parts = [part.strip() for part in settings.NEXA_ADDRESS.split(",")]
    if len(parts) == 4 and parts[3].lower() in _COUNTRIES and " " in parts[2]:
        state, zipcode = parts[2].split(" ", 1)
        address = {"address_line1": parts[0], "city": parts[1], "state": state, "zipcode": zipcode,
                   "country": _COUNTRIES[parts[3].lower()]}
    else:
        address = {"address_line1": settings.NEXA_ADDRESS, "country": "CA"}
    return {"name": settings.NEXA_LEGAL_NAME, "legal_name": settings.NEXA_LEGAL_NAME,
            "tax_identification_number": settings.NEXA_HST_NUMBER, **address}


ORGANIZATION_FIELDS = ("name", "legal_name", "legal_number", "tax_identification_number", "email", "address_line1",
                       "address_line2", "city", "state", "zipcode", "country", "invoice_footer", "document_locale")


@transaction.atomic
def organization_update(*, values: dict, changed_by: Service | None) -> Organization:
    """Change what invoices say about the seller (ORGANIZATION_FIELDS); audited (apps/audit OrganizationEvent).

    `changed_by`: the calling service, allowed only when settings.ORGANIZATION_API_SERVICES names it (the
    organization is every service's: one product's key must not rewrite what all invoices say); None for staff.
    `values` may also carry the settings Lago keeps on the organization (`organization_settings`), unchanged: an
    app that sends back the body it read is not refused, one that asks for another time zone or currency is.
    """
    if changed_by is not None and changed_by.code not in settings.ORGANIZATION_API_SERVICES:
        raise Forbidden("the organization is changed by staff or the services in ORGANIZATION_API_SERVICES")
    fixed = organization_settings()
    refused = {name: ["value_is_invalid"] for name, value in values.items()
               if name in fixed and value is not None and value != fixed[name]}
    unknown = set(values) - set(ORGANIZATION_FIELDS) - set(fixed)
    if unknown:
        raise ValueError(f"not organization fields: {sorted(unknown)}")  # the caller's serializer lets only these through
    if refused:
        raise ValidationFailed("set in the hub's settings", details=refused)
    Organization.objects.get_or_create(pk=1, defaults=organization_defaults())
    organization = Organization.objects.select_for_update().get(pk=1)
    changed = [name for name in ORGANIZATION_FIELDS if name in values and getattr(organization, name) != (
        values[name] if values[name] is not None else "")]
    for name in changed:
        setattr(organization, name, values[name] if values[name] is not None else "")
    if changed:
        organization.save(update_fields=[*changed, "updated_at"])
    return organization
