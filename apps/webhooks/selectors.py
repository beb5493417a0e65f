"""Reads for outbound webhooks, scoped by the calling service."""
from __future__ import annotations

import uuid

from django.db.models import QuerySet

from apps.core.exceptions import NotFound
from apps.customers.models import Service

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
