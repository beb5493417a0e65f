from __future__ import annotations

import zoneinfo

from django.db import models
from django.db.models import Q

from apps.core.models import TimeStampedModel

TIMEZONE_CHOICES = sorted(zoneinfo.available_timezones())

# Canadian provinces and territories (ISO 3166-2:CA subdivision codes, without the "CA-" prefix).
CANADIAN_PROVINCES = {
    "AB": "Alberta",
    "BC": "British Columbia",
    "MB": "Manitoba",
    "NB": "New Brunswick",
    "NL": "Newfoundland and Labrador",
    "NS": "Nova Scotia",
    "NT": "Northwest Territories",
    "NU": "Nunavut",
    "ON": "Ontario",
    "PE": "Prince Edward Island",
    "QC": "Quebec",
    "SK": "Saskatchewan",
    "YT": "Yukon",
}


class Service(TimeStampedModel):
    """A Nexa product (NexaCloud, NexaDesk...) that calls the API with its own key.

    The key is shown once when generated; only its SHA-256 hex digest is stored, so a
    database leak does not leak usable keys. Rotating replaces the digest: the old key
    stops working at once.
    """

    code = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=255)
    active = models.BooleanField(default=True)
    api_key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # First characters of the key, to tell keys apart in the admin without storing the secret.
    api_key_prefix = models.CharField(max_length=16, editable=False)
    api_key_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ("code",)

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class Customer(TimeStampedModel):
    """The billing party. Shared by every service that links to it (AccountLink)."""

    class CustomerType(models.TextChoices):
        COMPANY = "company"
        INDIVIDUAL = "individual"

    # The hub's own reference for the customer (Odoo partner ref, reconciliation key): "<service code>:<the
    # service's external_id>", so as long as Service.code (64) + 1 + AccountLink.external_id (255).
    external_id = models.CharField(max_length=320, unique=True)
    name = models.CharField(max_length=255, blank=True)
    firstname = models.CharField(max_length=255, blank=True)
    lastname = models.CharField(max_length=255, blank=True)
    legal_name = models.CharField(max_length=255, blank=True)
    legal_number = models.CharField(max_length=255, blank=True)
    tax_identification_number = models.CharField(max_length=255, blank=True)
    customer_type = models.CharField(max_length=16, choices=CustomerType.choices, blank=True)
    email = models.CharField(max_length=255, blank=True)
    phone = models.CharField(max_length=64, blank=True)
    url = models.CharField(max_length=255, blank=True)
    address_line1 = models.CharField(max_length=255, blank=True)
    address_line2 = models.CharField(max_length=255, blank=True)
    city = models.CharField(max_length=255, blank=True)
    zipcode = models.CharField(max_length=32, blank=True)
    # Province/state code; for Canada one of CANADIAN_PROVINCES (drives sales tax).
    state = models.CharField(max_length=64, blank=True)
    country = models.CharField(max_length=2, blank=True)  # ISO 3166-1 alpha-2
    currency = models.CharField(max_length=3, blank=True)  # ISO 4217; default for its invoices
    timezone = models.CharField(max_length=64, blank=True)  # IANA; blank = hub default
    net_payment_term = models.PositiveIntegerField(default=0)  # days
    # Days an invoice stays draft before finalization; null = the hub's INVOICE_GRACE_PERIOD_DAYS.
    invoice_grace_period = models.PositiveIntegerField(null=True, blank=True)
    metadata = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return self.legal_name or self.name or self.external_id

    @property
    def applicable_timezone(self) -> str:
        from django.conf import settings

        return self.timezone or settings.TIME_ZONE


class AccountLink(TimeStampedModel):
    """How one service addresses a customer: (service, its external customer id) -> Customer.

    The API exposes a customer to a service through its link only, so one service never
    sees another's external ids. Deleting a customer through the API deletes the link.
    """

    service = models.ForeignKey(Service, on_delete=models.PROTECT, related_name="account_links")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="account_links")
    external_id = models.CharField(max_length=255)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(
                fields=("service", "external_id"),
                condition=Q(deleted_at__isnull=True),
                name="uniq_live_account_link_per_service",
            )
        ]

    def __str__(self) -> str:
        return f"{self.service.code}:{self.external_id}"


class Organization(TimeStampedModel):
    """The company that bills (Nexa Systems Inc., Ontario): one row, Lago's organization and its one billing entity.

    What its invoices say about the seller (names, address, tax number, footer); seeded from settings by migration
    0003 and changed only through `customers.services.organization_update` (audited). The billing rules Lago keeps
    on the organization (time zone, currency, grace period, numbering) are the hub's settings, not columns here.
    """

    name = models.CharField(max_length=255)
    legal_name = models.CharField(max_length=255, blank=True)
    legal_number = models.CharField(max_length=255, blank=True)
    tax_identification_number = models.CharField(max_length=255, blank=True)  # the HST/GST registration
    email = models.CharField(max_length=255, blank=True)
    address_line1 = models.CharField(max_length=255, blank=True)
    address_line2 = models.CharField(max_length=255, blank=True)
    city = models.CharField(max_length=255, blank=True)
    state = models.CharField(max_length=64, blank=True)
    zipcode = models.CharField(max_length=32, blank=True)
    country = models.CharField(max_length=2, blank=True)  # ISO 3166-1 alpha-2
    invoice_footer = models.TextField(blank=True)  # printed at the bottom of every invoice PDF
    document_locale = models.CharField(max_length=8, default="en")  # ISO 639-1

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(pk=1), name="organization_is_one_row")]

    def __str__(self) -> str:
        return self.name

    @property
    def address(self) -> str:
        """One line, as invoices print it."""
        place = " ".join(part for part in (self.state, self.zipcode) if part)
        parts = [self.address_line1, self.address_line2, self.city, place, self.country]
        return ", ".join(part for part in parts if part)
