"""Reads for outbound webhooks, scoped by the calling service."""
from __future__ import annotations

import base64
import uuid

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet

from apps.core.exceptions import NotFound
from apps.customers.models import Service

from . import signing
from .models import WebhookDelivery, WebhookEndpoint


def webhook_endpoint_list(*, service: Service) -> QuerySet[WebhookEndpoint]:
    return (
        WebhookEndpoint.objects.filter(service=service, deleted_at__isnull=True)
        .select_related("service")
        .order_by("created_at", "pk")
    )


def webhook_endpoint_get(*, service: Service, lago_id) -> WebhookEndpoint:
    """Return the service's endpoint; another service's endpoint is 404 like an unknown one."""
    try:
        lago_id = uuid.UUID(str(lago_id))
    except ValueError:
        raise NotFound("webhook_endpoint") from None
    endpoint = webhook_endpoint_list(service=service).filter(lago_id=lago_id).first()
    if endpoint is None:
        raise NotFound("webhook_endpoint")
    return endpoint


def webhook_delivery_list(*, service: Service) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(event__service=service).select_related("event", "endpoint")


def webhook_jwt_key_pem() -> bytes | None:
    """The hub's RSA private key for `jwt` endpoints (WEBHOOK_JWT_PRIVATE_KEY, base64 of the PEM), or None if unset."""
    raw = settings.WEBHOOK_JWT_PRIVATE_KEY
    if not raw:
        return None
    try:
        pem = base64.b64decode(raw, validate=False)
        signing.rsa_private_key(pem)
    except ValueError as exc:
        raise ImproperlyConfigured(f"WEBHOOK_JWT_PRIVATE_KEY is not a base64 PEM RSA private key: {exc}") from None
    return pem


def webhook_public_key_base64() -> str | None:
    """The public key receivers verify `jwt` webhooks with, as Lago serves it (base64 of the PEM); None if unset."""
    pem = webhook_jwt_key_pem()
    return None if pem is None else signing.public_key_base64(pem)
