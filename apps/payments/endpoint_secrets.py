"""Stripe webhook endpoint secrets, encrypted at rest (payments.models.StripeWebhookSecret).

dj-stripe writes an endpoint's secret into its own plain-text column when the endpoint is created or synced (the
admin's "add webhook endpoint" does both). `stripe_endpoint_secret_seal` moves it into the encrypted copy and blanks
the column; it runs after every save of an endpoint (PaymentsConfig.ready), from the migration for rows saved
before, and from the webhook view for a row changed by a bulk update (which sends no signal).
"""
from __future__ import annotations

from django.db import transaction
from djstripe.models import WebhookEndpoint

from .models import StripeWebhookSecret


@transaction.atomic
def stripe_endpoint_secret_seal(*, endpoint_id: int) -> None:
    """Move a plain-text secret from dj-stripe's column into the encrypted copy. A no-op once the column is blank."""
    endpoint = WebhookEndpoint.objects.select_for_update().only("pk", "secret").get(pk=endpoint_id)
    if not endpoint.secret:
        return
    StripeWebhookSecret.objects.update_or_create(endpoint_id=endpoint.pk, defaults={"secret": endpoint.secret})
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret="")


def stripe_endpoint_secret_get(*, endpoint_id: int) -> str:
    """Return the endpoint's signing secret, decrypted (blank when none is known)."""
    row = StripeWebhookSecret.objects.filter(endpoint_id=endpoint_id).only("secret").first()
    return row.secret if row is not None else ""


def on_endpoint_saved(sender, instance: WebhookEndpoint, raw: bool = False, **kwargs) -> None:
    """post_save receiver for dj-stripe's WebhookEndpoint: the only hook into a model the hub does not own."""
    if not raw and instance.secret:
        stripe_endpoint_secret_seal(endpoint_id=instance.pk)
