"""Outbound webhooks: endpoint -> event (immutable signed body) -> delivery (per endpoint) -> attempt."""
from __future__ import annotations

import json
import secrets

from django.db import models
from django.db.models import Q
from encrypted_fields.fields import EncryptedCharField

from apps.core.models import TimeStampedModel

# Lago's webhook names (research/lago-api.md §2.13) -> the key the object sits under in the body.
EVENT_OBJECT_TYPES: dict[str, str] = {
    "invoice.created": "invoice",
    "invoice.drafted": "invoice",
    "invoice.voided": "invoice",
    "invoice.deleted": "invoice",
    "invoice.payment_status_updated": "invoice",
    "invoice.payment_overdue": "invoice",
    "invoice.payment_dispute_lost": "invoice",
    "invoice.payment_failure": "payment_provider_invoice_payment_error",
    "credit_note.created": "credit_note",
    "subscription.started": "subscription",
    "subscription.terminated": "subscription",
    "subscription.usage_threshold_reached": "subscription",
    "alert.triggered": "triggered_alert",
    "customer.created": "customer",
    "customer.updated": "customer",
    "customer.payment_provider_created": "customer",
    "customer.checkout_url_generated": "payment_provider_customer_checkout_url",
    "event.error": "event_error",
    "events.errors": "events_errors",
    "payment_request.created": "payment_request",
    "payment_request.payment_status_updated": "payment_request",
    "wallet_transaction.created": "wallet_transaction",
    "wallet_transaction.updated": "wallet_transaction",
    "wallet.depleted_ongoing_balance": "wallet",
    "alert.triggered": "triggered_alert",
}
# Sent only by the admin's "send test event" action, to the one endpoint tested; not subscribable.
TEST_EVENT_TYPE = "webhook_endpoint.test"

MAX_ENDPOINTS_PER_SERVICE = 10  # Lago's per-organization limit


def new_signing_secret() -> str:
    return secrets.token_urlsafe(32)


class WebhookEndpoint(TimeStampedModel):
    """Where one service wants its events. `event_types` null = every event type."""

    class SignatureAlgo(models.TextChoices):
        HMAC = "hmac"
        JWT = "jwt"  # RS256 with the hub's key pair (WEBHOOK_JWT_PRIVATE_KEY); offered only when it is set

    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, related_name="webhook_endpoints")
    name = models.CharField(max_length=255, blank=True)
    webhook_url = models.URLField(max_length=1024)
    signature_algo = models.CharField(max_length=8, choices=SignatureAlgo.choices, default=SignatureAlgo.HMAC)
    # HMAC key for X-Lago-Signature; shown to the owning service through the API (`hmac_key`). Encrypted at rest
    # (Fernet, a key derived from SECRET_KEY and FIELD_ENCRYPTION_SALT): a database dump alone cannot forge webhooks.
    signing_secret = EncryptedCharField(max_length=128, default=new_signing_secret)
    active = models.BooleanField(default=True)
    event_types = models.JSONField(null=True, blank=True)  # list of EVENT_OBJECT_TYPES keys, or null = all
    # Deleted through the API: kept (deliveries point at it) but inactive and invisible to the service.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("created_at",)
        constraints = [
            models.UniqueConstraint(
                fields=("service", "webhook_url"),
                condition=Q(deleted_at__isnull=True),
                name="uniq_live_webhook_url_per_service",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service_id}:{self.webhook_url}"

    def wants(self, event_type: str) -> bool:
        return self.event_types is None or event_type in self.event_types


class WebhookEvent(TimeStampedModel):
    """One event for one service. `body` is the exact bytes sent (and signed) on every attempt; never updated."""

    service = models.ForeignKey("customers.Service", on_delete=models.PROTECT, related_name="webhook_events")
    # Receivers deduplicate on this (body `event_id`, header X-Lago-Unique-Key); same value on every retry.
    event_id = models.UUIDField(unique=True)
    event_type = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)  # the object's lago_id, when it has one
    body = models.BinaryField()

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"

    @property
    def payload(self) -> dict:
        return json.loads(bytes(self.body))


class WebhookDelivery(TimeStampedModel):
    """One event to one endpoint. Claimed by a conditional UPDATE before each send; see services."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"  # claimed by a worker; the sweep recovers it if the worker dies
        RETRYING = "retrying"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    event = models.ForeignKey(WebhookEvent, on_delete=models.PROTECT, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)  # attempts in the current budget (reset by resend)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ("-created_at",)
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=("event", "endpoint"), name="uniq_webhook_delivery_per_endpoint"),
        ]
        indexes = [
            models.Index(
                fields=("next_attempt_at",),
                name="webhook_delivery_due",
                condition=Q(status__in=("pending", "retrying", "sending")),
            ),
        ]

    def __str__(self) -> str:
        return f"delivery {self.pk} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP POST of a delivery (append-only)."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveIntegerField()  # 1-based over the delivery's whole life, resends included
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)  # null: no HTTP answer (timeout, refused)
    response_excerpt = models.TextField(blank=True)  # first characters of the receiver's body
    error = models.TextField(blank=True)
    succeeded = models.BooleanField(default=False)

    class Meta:
        ordering = ("delivery", "number")
        constraints = [
            models.UniqueConstraint(fields=("delivery", "number"), name="uniq_webhook_attempt_number"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}: {self.status_code or self.error}"
