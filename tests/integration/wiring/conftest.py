"""Helpers for the cross-app wiring tests: billing builders, webhook endpoints and recorded event bodies."""
from __future__ import annotations

import json

import pytest

from apps.customers.models import AccountLink
from apps.webhooks.models import WebhookEvent
from apps.webhooks.services import webhook_endpoint_create
from tests.integration.invoicing.conftest import Billing


@pytest.fixture
def billing(service_factory):
    issued = service_factory("nexacloud", "NexaCloud")
    builder = Billing(issued.service)
    builder.raw_key = issued.raw_key
    return builder


@pytest.fixture
def other_billing(service_factory):
    return Billing(service_factory("nexamail", "NexaMail").service)


def listen(service, url="https://app.example.com/hooks", event_types=None):
    return webhook_endpoint_create(service=service, values={"webhook_url": url, "event_types": event_types})


def share_customer(link, service, external_id):
    """Link `service` to the customer behind `link` under its own external id (one billing party)."""
    return AccountLink.objects.create(service=service, customer=link.customer, external_id=external_id)


def events(service, event_type=None) -> list[dict]:
    """The service's invoice and credit-note event bodies in order (subscription events are not ours)."""
    rows = WebhookEvent.objects.filter(service=service, object_type__in=("invoice", "credit_note",
                                                                         "payment_provider_invoice_payment_error"))
    rows = rows.order_by("pk")
    if event_type:
        rows = rows.filter(event_type=event_type)
    return [json.loads(bytes(row.body)) for row in rows]
