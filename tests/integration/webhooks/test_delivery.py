"""Outbound webhooks against a real receiver on 127.0.0.1: signatures, retries, budget, sweep, isolation."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEvent
from apps.webhooks.services import (
    SWEEP_PENDING_MARGIN,
    webhook_delivery_resend,
    webhook_delivery_send,
    webhook_delivery_sweep,
    webhook_event_record,
)

pytestmark = pytest.mark.django_db

INVOICE = {"lago_id": "8b6e5f0a-2f7c-4c55-9c5e-6a1d7f0b9a11", "number": "NEXA-2026-000001", "total_amount_cents": 11300}


def record(service, *, event_type="invoice.created", object_type="invoice", payload=INVOICE):
    return webhook_event_record(
        event_type=event_type, object_type=object_type, payload_object=payload, service_ids=[service.pk]
    )


def only_delivery(event: WebhookEvent) -> WebhookDelivery:
    (delivery,) = WebhookDelivery.objects.filter(event=event)
    return delivery


def test_delivered_body_verifies_with_the_documented_hmac(service_factory, endpoint_for, receiver, django_capture_on_commit_callbacks):
    cloud = service_factory("cloud").service
    endpoint = endpoint_for(cloud, receiver.url + "/hooks")
    with django_capture_on_commit_callbacks(execute=True):
        (event,) = record(cloud)

    (got,) = receiver.requests
    # The README's receiving recipe, written out independently of apps.webhooks.signing.
    expected = base64.b64encode(hmac.new(endpoint.signing_secret.encode(), got.body, hashlib.sha256).digest()).decode()
    assert hmac.compare_digest(got.headers["x-lago-signature"], expected)
    assert got.headers["x-lago-signature-algorithm"] == "hmac"
    assert got.headers["content-type"] == "application/json"
    assert got.body == bytes(event.body)
    body = json.loads(got.body)
    assert body["webhook_type"] == "invoice.created"
    assert body["object_type"] == "invoice"
    assert body["invoice"] == INVOICE
    assert body["organization_id"] == str(cloud.lago_id)
    assert body["event_id"] == got.headers["x-lago-unique-key"] == str(event.event_id)
    # A tampered body or another endpoint's secret does not verify.
    forged = base64.b64encode(hmac.new(b"other-secret", got.body, hashlib.sha256).digest()).decode()
    assert not hmac.compare_digest(got.headers["x-lago-signature"], forged)
    delivery = only_delivery(event)
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)


def test_receiver_failing_twice_gets_the_event_acknowledged_once_after_three_attempts(service_factory, endpoint_for, receiver):
    cloud = service_factory("cloud").service
    endpoint_for(cloud, receiver.url)
    receiver.fail_times = 2
    (event,) = record(cloud)
    delivery = only_delivery(event)
    t0 = timezone.now()

    assert webhook_delivery_send(delivery_id=delivery.pk, now=t0).status == "retrying"
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == t0 + timedelta(seconds=30)
    # Not due yet: nothing is claimed and nothing is sent.
    assert webhook_delivery_send(delivery_id=delivery.pk, now=t0 + timedelta(seconds=29)) is None
    assert len(receiver.requests) == 1
    assert webhook_delivery_send(delivery_id=delivery.pk, now=t0 + timedelta(seconds=30)).status == "retrying"
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == t0 + timedelta(seconds=90)  # exponential: 30 s, then 60 s
    delivery = webhook_delivery_send(delivery_id=delivery.pk, now=t0 + timedelta(seconds=90))
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("succeeded", 3, "")
    # Done: a late or duplicate task does not send again.
    assert webhook_delivery_send(delivery_id=delivery.pk, now=t0 + timedelta(hours=1)) is None

    assert len(receiver.requests) == 3
    assert {r.body for r in receiver.requests} == {bytes(event.body)}  # same bytes, same event id every time
    attempts = list(WebhookAttempt.objects.filter(delivery=delivery).order_by("number"))
    assert [(a.number, a.status_code, a.succeeded) for a in attempts] == [(1, 500, False), (2, 500, False), (3, 200, True)]
    assert [a.response_excerpt for a in attempts] == ["receiver error", "receiver error", '{"ok":true}']
    assert all(a.duration_ms >= 0 for a in attempts)


def test_receiver_down_past_the_budget_leaves_the_delivery_failed_and_resendable(service_factory, endpoint_for, receiver, settings, django_capture_on_commit_callbacks):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    cloud = service_factory("cloud").service
    endpoint_for(cloud, receiver.url)
    receiver.drop = True
    (event,) = record(cloud)
    delivery = only_delivery(event)
    now = timezone.now()
    for _ in range(3):
        delivery = webhook_delivery_send(delivery_id=delivery.pk, now=now)
        now = now + timedelta(hours=7)  # past any backoff
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 3, None)
    assert "RemoteDisconnected" in delivery.last_error or "Connection" in delivery.last_error
    assert webhook_delivery_send(delivery_id=delivery.pk, now=now) is None  # budget spent
    assert webhook_delivery_sweep(now=now + timedelta(days=1)) == []  # the sweep leaves failed rows alone
    attempts = WebhookAttempt.objects.filter(delivery=delivery)
    assert [a.status_code for a in attempts] == [None, None, None]
    assert all(a.error for a in attempts)

    receiver.drop = False
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert webhook_delivery_resend(delivery_id=delivery.pk) is True
    assert len(callbacks) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert list(WebhookAttempt.objects.filter(delivery=delivery).values_list("number", "succeeded")) == [
        (1, False), (2, False), (3, False), (4, True)
    ]
    assert len(receiver.requests) == 4
    assert webhook_delivery_resend(delivery_id=delivery.pk) is True  # a delivered event can be re-sent too


def test_refused_connection_is_recorded_as_an_attempt_without_status(service_factory, endpoint_for):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    cloud = service_factory("cloud").service
    endpoint_for(cloud, f"http://127.0.0.1:{port}/hooks")
    (event,) = record(cloud)
    delivery = webhook_delivery_send(delivery_id=only_delivery(event).pk)
    assert delivery.status == "retrying"
    (attempt,) = WebhookAttempt.objects.filter(delivery=delivery)
    assert attempt.status_code is None and "refused" in attempt.error.lower()


def test_event_whose_message_was_lost_after_commit_is_delivered_by_the_sweep(service_factory, endpoint_for, receiver, django_capture_on_commit_callbacks):
    cloud = service_factory("cloud").service
    endpoint_for(cloud, receiver.url)
    # The worker dies between commit and send: the enqueue never happens.
    with django_capture_on_commit_callbacks(execute=False) as lost:
        (event,) = record(cloud)
    assert len(lost) == 1 and receiver.requests == []
    delivery = only_delivery(event)
    assert delivery.status == "pending"

    # Within the margin the commit-time message may still be in flight: leave it.
    assert webhook_delivery_sweep(now=delivery.next_attempt_at + SWEEP_PENDING_MARGIN / 2) == []
    assert webhook_delivery_sweep(now=delivery.next_attempt_at + SWEEP_PENDING_MARGIN) == [delivery.pk]
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert len(receiver.requests) == 1
    assert webhook_delivery_sweep(now=timezone.now() + timedelta(hours=1)) == []


def test_delivery_whose_worker_died_mid_send_is_recovered_by_the_sweep(service_factory, endpoint_for, receiver):
    cloud = service_factory("cloud").service
    endpoint_for(cloud, receiver.url)
    (event,) = record(cloud)
    delivery = only_delivery(event)
    claimed_at = timezone.now() - timedelta(hours=1)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="sending", attempts=1, claimed_at=claimed_at)

    assert webhook_delivery_sweep() == [delivery.pk]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert "worker lost" in WebhookDelivery.objects.get(pk=delivery.pk).last_error or delivery.last_error == ""
    assert len(receiver.requests) == 1


def test_sweep_enqueues_due_retries(service_factory, endpoint_for, receiver):
    cloud = service_factory("cloud").service
    endpoint_for(cloud, receiver.url)
    receiver.fail_times = 1
    (event,) = record(cloud)
    delivery = webhook_delivery_send(delivery_id=only_delivery(event).pk)
    assert delivery.status == "retrying"
    assert webhook_delivery_sweep(now=delivery.next_attempt_at - timedelta(seconds=1)) == []
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert webhook_delivery_sweep() == [delivery.pk]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)


def test_a_service_never_receives_another_services_events(service_factory, endpoint_for, receiver):
    cloud, desk = service_factory("cloud").service, service_factory("desk").service
    endpoint_for(cloud, receiver.url + "/cloud")
    endpoint_for(desk, receiver.url + "/desk")

    (cloud_event,) = record(cloud)
    assert cloud_event.service_id == cloud.pk
    assert list(WebhookDelivery.objects.values_list("endpoint__service_id", flat=True)) == [cloud.pk]

    # One invoice billing both services' subscriptions: one event per service, each to its own endpoints.
    events = webhook_event_record(
        event_type="invoice.created", object_type="invoice", payload_object=INVOICE, service_ids=[desk.pk, cloud.pk, cloud.pk]
    )
    assert sorted(e.service_id for e in events) == sorted([cloud.pk, desk.pk])
    assert len({e.event_id for e in events}) == 2
    for delivery in WebhookDelivery.objects.select_related("event", "endpoint"):
        assert delivery.event.service_id == delivery.endpoint.service_id
        webhook_delivery_send(delivery_id=delivery.pk)
    assert len(receiver.at("/cloud")) == 2 and len(receiver.at("/desk")) == 1
    (desk_got,) = receiver.at("/desk")
    assert json.loads(desk_got.body)["organization_id"] == str(desk.lago_id)
    assert all(json.loads(r.body)["organization_id"] == str(cloud.lago_id) for r in receiver.at("/cloud"))


def test_only_active_endpoints_subscribed_to_the_type_get_a_delivery(service_factory, endpoint_for, receiver):
    cloud = service_factory("cloud").service
    all_types = endpoint_for(cloud, receiver.url + "/all")
    invoices = endpoint_for(cloud, receiver.url + "/invoices", event_types=["invoice.created"])
    endpoint_for(cloud, receiver.url + "/off", active=False)
    subscriptions = endpoint_for(cloud, receiver.url + "/subs", event_types=["subscription.started"])

    (event,) = record(cloud)
    assert set(WebhookDelivery.objects.filter(event=event).values_list("endpoint_id", flat=True)) == {all_types.pk, invoices.pk}
    assert not WebhookDelivery.objects.filter(endpoint=subscriptions).exists()


def test_recording_rolls_back_with_the_callers_transaction(service_factory, endpoint_for, receiver):
    from django.db import transaction

    cloud = service_factory("cloud").service
    endpoint_for(cloud, receiver.url)
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            record(cloud)
            raise RuntimeError("the change that caused the event failed")
    assert not WebhookEvent.objects.exists() and not WebhookDelivery.objects.exists()


def test_unknown_event_type_or_wrong_object_key_is_refused(service_factory):
    cloud = service_factory("cloud").service
    with pytest.raises(ValueError):
        record(cloud, event_type="invoice.exploded")
    with pytest.raises(ValueError):
        record(cloud, event_type="invoice.payment_failure", object_type="invoice")
    with pytest.raises(ValueError):
        webhook_event_record(event_type="invoice.created", object_type="invoice", payload_object={}, service_ids=[999_999])


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_send_the_same_delivery(service_factory, endpoint_for, receiver, monkeypatch):
    monkeypatch.setattr("apps.webhooks.services._enqueue", lambda ids: None)  # the two workers below send it
    cloud = service_factory("cloud").service
    endpoint_for(cloud, receiver.url)
    receiver.delay_seconds = 0.3  # the first sender is still waiting on the receiver when the second claims
    (event,) = record(cloud)
    delivery_id = only_delivery(event).pk
    results, barrier = [], threading.Barrier(2)

    def worker():
        try:
            barrier.wait(timeout=5)
            results.append(webhook_delivery_send(delivery_id=delivery_id))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(receiver.requests) == 1
    assert sorted(r is None for r in results) == [False, True]
    assert WebhookDelivery.objects.get(pk=delivery_id).status == "succeeded"
    assert WebhookAttempt.objects.filter(delivery_id=delivery_id).count() == 1


def test_usage_event_error_is_recorded_in_lagos_event_error_shape(service_factory, endpoint_for, receiver):
    from apps.webhooks.services import webhook_event_error_record

    cloud = service_factory("cloud").service
    endpoint_for(cloud, receiver.url, event_types=["event.error"])
    usage_event = {"transaction_id": "tx-1", "external_subscription_id": "sub-1", "code": "nope", "properties": {}}
    event = webhook_event_error_record(service_id=cloud.pk, event=usage_event, error={"code": ["does_not_exist"]})
    webhook_delivery_send(delivery_id=only_delivery(event).pk)
    body = json.loads(receiver.requests[0].body)
    assert (body["webhook_type"], body["object_type"]) == ("event.error", "event_error")
    assert body["event_error"] == {
        "status": 422, "error": "Unprocessable entity", "message": '{"code":["does_not_exist"]}', "event": usage_event
    }
