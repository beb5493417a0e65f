"""subscription.started / subscription.terminated are recorded by the subscription services, in their transaction."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.catalog.services import plan_create
from apps.subscriptions.services import (
    SubscriptionRequest,
    subscription_activate_due,
    subscription_create,
    subscription_terminate,
)
from apps.webhooks.models import WebhookDelivery, WebhookEvent

pytestmark = pytest.mark.django_db


def plan(service, code: str, amount_cents: int):
    return plan_create(
        service=service,
        values={"code": code, "name": code, "interval": "monthly", "amount_cents": amount_cents, "amount_currency": "CAD"},
        charges=[],
    )


def bodies(service) -> list[dict]:
    return [json.loads(bytes(e.body)) for e in WebhookEvent.objects.filter(service=service).order_by("created_at", "pk")]


def test_create_upgrade_and_terminate_send_started_and_terminated(service_factory, endpoint_for, receiver, django_capture_on_commit_callbacks):
    cloud, desk = service_factory("cloud").service, service_factory("desk").service
    endpoint_for(cloud, receiver.url + "/cloud")
    endpoint_for(desk, receiver.url + "/desk")
    basic, pro = plan(cloud, "basic", 1000), plan(cloud, "pro", 5000)

    with django_capture_on_commit_callbacks(execute=True):
        first = subscription_create(service=cloud, request=SubscriptionRequest("sub-1", "acme", basic))
    (got,) = receiver.at("/cloud")
    body = json.loads(got.body)
    assert (body["webhook_type"], body["object_type"]) == ("subscription.started", "subscription")
    assert body["subscription"]["external_id"] == "sub-1"
    assert body["subscription"]["lago_id"] == str(first.lago_id)
    assert body["subscription"]["status"] == "active"

    # Same plan again: idempotent, no second event.
    subscription_create(service=cloud, request=SubscriptionRequest("sub-1", "acme", basic))
    upgraded = subscription_create(service=cloud, request=SubscriptionRequest("sub-1", "acme", pro))
    subscription_terminate(subscription_id=upgraded.pk)
    subscription_terminate(subscription_id=upgraded.pk)  # idempotent, no second event

    sent = [(b["webhook_type"], b["subscription"]["lago_id"], b["subscription"]["status"]) for b in bodies(cloud)]
    assert sent == [
        ("subscription.started", str(first.lago_id), "active"),
        ("subscription.terminated", str(first.lago_id), "terminated"),
        ("subscription.started", str(upgraded.lago_id), "active"),
        ("subscription.terminated", str(upgraded.lago_id), "terminated"),
    ]
    assert bodies(desk) == [] and receiver.at("/desk") == []
    assert WebhookDelivery.objects.filter(endpoint__service=desk).count() == 0


def test_a_pending_subscription_sends_started_when_it_activates(service_factory, endpoint_for, receiver):
    cloud = service_factory("cloud").service
    endpoint_for(cloud, receiver.url)
    starts_at = timezone.now() + timedelta(days=3)
    pending = subscription_create(
        service=cloud, request=SubscriptionRequest("sub-2", "acme", plan(cloud, "basic", 1000), subscription_at=starts_at)
    )
    assert bodies(cloud) == []
    subscription_terminate(subscription_id=pending.pk)  # canceling a pending one is not a termination
    assert bodies(cloud) == []

    later = subscription_create(
        service=cloud, request=SubscriptionRequest("sub-3", "acme", plan(cloud, "pro", 1000), subscription_at=starts_at)
    )
    assert subscription_activate_due(now=starts_at + timedelta(seconds=1)) == 1
    ((kind, lago_id),) = [(b["webhook_type"], b["subscription"]["lago_id"]) for b in bodies(cloud)]
    assert (kind, lago_id) == ("subscription.started", str(later.lago_id))
