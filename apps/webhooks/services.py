"""Writes for outbound webhooks: record events (inside the caller's transaction), send, retry, sweep, resend.

Life of a delivery:
  pending --claim--> sending --2xx--> succeeded
                        |--error, attempts < WEBHOOK_MAX_ATTEMPTS--> retrying (next_attempt_at = now + backoff)
                        '--error, budget spent--> failed  --resend--> pending (fresh budget)
A claim is a conditional UPDATE (status pending/retrying, next_attempt_at <= now), so two workers never send the
same delivery at once and no row lock is held across the HTTP call. The periodic sweep enqueues due retries,
re-enqueues pending rows whose commit-time message was lost, and recovers rows whose worker died mid-send.
"""
from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.core.exceptions import ValidationFailed
from apps.core.models import uuid4_many
from apps.core.queue import task_send
from apps.customers.models import Service

from . import sender
from .destinations import DestinationRefused, DestinationUnresolved, destination_resolve
from .models import (
    EVENT_OBJECT_TYPES,
    MAX_ENDPOINTS_PER_SERVICE,
    TEST_EVENT_TYPE,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from .selectors import webhook_jwt_key_pem
from .signing import signed_headers

log = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 30  # first retry after 30 s, then 60, 120, ... (8 attempts span ~1 h)
BACKOFF_MAX_SECONDS = 6 * 3600
# A pending row's message is sent at commit; only after this long is it presumed lost.
SWEEP_PENDING_MARGIN = timedelta(minutes=2)
SWEEP_BATCH = 500

Status = WebhookDelivery.Status


def backoff_delay(attempts: int) -> timedelta:
    """Return the wait after the `attempts`-th failed attempt (1-based): 30 s * 2^(attempts-1), capped."""
    return timedelta(seconds=min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS))


def _body_bytes(*, event_type: str, object_type: str, service: Service, event_id: uuid.UUID, payload_object) -> bytes:
    body = {
        "webhook_type": event_type,
        "object_type": object_type,
        "organization_id": str(service.lago_id),  # Lago's org = the calling service here
        "event_id": str(event_id),
        object_type: payload_object,
    }
    # Serialized once; these exact bytes are stored, signed and sent on every attempt.
    return json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _enqueue(delivery_ids: list[int]) -> None:
    for delivery_id in delivery_ids:
        # By name: webhooks.tasks calls this module, which therefore does not import it back.
        task_send("apps.webhooks.tasks.webhook_delivery_send_task", delivery_id)


def _enqueue_on_commit(delivery_ids: list[int]) -> None:
    if delivery_ids:
        # robust: a broker outage must not fail the caller after its commit; the sweep re-sends.
        transaction.on_commit(lambda: _enqueue(delivery_ids), robust=True)


@transaction.atomic
def webhook_event_record(
    *,
    event_type: str,
    object_type: str,
    payload_object: dict,
    service_ids: Iterable[int],
    endpoint_ids: Iterable[int] | None = None,
) -> list[WebhookEvent]:
    """Record one event per service in `service_ids` and one pending delivery per matching active endpoint.

    Call inside the transaction that made the change: the rows commit or roll back with it, and sending is
    enqueued only after commit. Pass only services entitled to the object (whose customer, subscription or
    invoice it is); the same object rendered for every service is fine since payloads carry the caller's view.
    `endpoint_ids` restricts delivery to those endpoints (the admin's test event).
    """
    return webhook_events_record(event_type=event_type, object_type=object_type,
                                 items=[(payload_object, service_ids)], endpoint_ids=endpoint_ids)


@transaction.atomic
def webhook_events_record(
    *,
    event_type: str,
    object_type: str,
    items: Sequence[tuple[dict, Iterable[int]]],
    endpoint_ids: Iterable[int] | None = None,
) -> list[WebhookEvent]:
    """`webhook_event_record` for many objects of one event type: (payload, service ids) per object.

    One read of the services and endpoints and one INSERT each for events and deliveries, whatever the count
    (the period close announces thousands of invoices per transaction).
    """
    expected = EVENT_OBJECT_TYPES.get(event_type)
    if event_type != TEST_EVENT_TYPE and expected is None:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    if expected is not None and object_type != expected:
        raise ValueError(f"{event_type} carries object_type {expected!r}, not {object_type!r}")
    wanted = [(payload, sorted(set(service_ids))) for payload, service_ids in items]
    all_ids = sorted({service_id for _, ids in wanted for service_id in ids})
    services = {s.pk: s for s in Service.objects.filter(pk__in=all_ids)}
    missing = set(all_ids) - services.keys()
    if missing:
        raise ValueError(f"unknown service ids {sorted(missing)}")
    endpoints = WebhookEndpoint.objects.filter(service_id__in=all_ids, active=True).order_by("pk")
    if event_type != TEST_EVENT_TYPE:
        from apps.migration.hooks import webhook_withheld_service_ids

        # Lago still tells these services' apps (migration phases `lago`, `dual_run`): events kept, not sent.
        endpoints = endpoints.exclude(service_id__in=webhook_withheld_service_ids(all_ids))
    if endpoint_ids is not None:
        endpoints = endpoints.filter(pk__in=list(endpoint_ids))
    by_service: dict[int, list[WebhookEndpoint]] = {}
    for endpoint in endpoints:
        if event_type == TEST_EVENT_TYPE or endpoint.wants(event_type):
            by_service.setdefault(endpoint.service_id, []).append(endpoint)

    now = timezone.now()
    events: list[WebhookEvent] = []
    # Ids for a close's thousands of events in one random read (`uuid4_many`), not one system call each.
    fresh = iter(uuid4_many(2 * sum(len(ids) for _, ids in wanted)))
    for payload_object, ids in wanted:
        object_id = str(payload_object.get("lago_id") or "")[:64] if isinstance(payload_object, dict) else ""
        for service_id in ids:
            event_id = next(fresh)
            events.append(WebhookEvent(
                lago_id=next(fresh),
                service_id=service_id,
                event_id=event_id,
                event_type=event_type,
                object_type=object_type,
                object_id=object_id,
                body=_body_bytes(
                    event_type=event_type,
                    object_type=object_type,
                    service=services[service_id],
                    event_id=event_id,
                    payload_object=payload_object,
                ),
            ))
    WebhookEvent.objects.bulk_create(events)  # PostgreSQL returns the ids
    pairs = [(event, endpoint) for event in events for endpoint in by_service.get(event.service_id, [])]
    deliveries = [
        WebhookDelivery(lago_id=lago_id, event=event, endpoint=endpoint, status=Status.PENDING, next_attempt_at=now)
        for (event, endpoint), lago_id in zip(pairs, uuid4_many(len(pairs)))
    ]
    created = WebhookDelivery.objects.bulk_create(deliveries)
    _enqueue_on_commit([d.pk for d in created])
    return events


def webhook_event_error_record(*, service_id: int, event: dict, error: dict | str, status: int = 422) -> WebhookEvent:
    """Record Lago's `event.error` for a usage event the hub could not ingest (`event` as the API renders it)."""
    payload = {
        "status": status,
        "error": "Unprocessable entity" if status == 422 else str(status),
        "message": error if isinstance(error, str) else json.dumps(error, separators=(",", ":")),
        "event": event,
    }
    return webhook_event_record(
        event_type="event.error", object_type="event_error", payload_object=payload, service_ids=[service_id]
    )[0]


def webhook_endpoint_send_test(*, endpoint_id: int) -> WebhookEvent:
    """Record a `webhook_endpoint.test` event delivered only to this endpoint (the admin's test button)."""
    endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
    payload = {"lago_id": str(endpoint.lago_id), "webhook_url": endpoint.webhook_url, "name": endpoint.name or None}
    return webhook_event_record(
        event_type=TEST_EVENT_TYPE,
        object_type="webhook_endpoint",
        payload_object=payload,
        service_ids=[endpoint.service_id],
        endpoint_ids=[endpoint.pk],
    )[0]


def webhook_delivery_send(*, delivery_id: int, now: datetime | None = None) -> WebhookDelivery | None:
    """Claim a due delivery, POST it once, record the attempt. Returns None when there was nothing to claim.

    Safe to run twice, late or concurrently: only the worker whose UPDATE matched sends. Call outside a
    transaction (the claim must commit before the HTTP call so no lock is held across it).
    """
    now = now or timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status__in=(Status.PENDING, Status.RETRYING), next_attempt_at__lte=now
    ).update(status=Status.SENDING, claimed_at=now, attempts=F("attempts") + 1, updated_at=now)
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    endpoint, event = delivery.endpoint, delivery.event
    body = bytes(event.body)
    if not endpoint.active:
        result = sender.SendResult(None, 0, "", "endpoint is inactive")
    else:
        try:
            # Checked again at every send (the name may resolve elsewhere now); the POST goes to this address.
            destination = destination_resolve(endpoint.webhook_url)
        except DestinationRefused as exc:
            result = sender.refused(str(exc))
        else:
            jwt_key = webhook_jwt_key_pem() if endpoint.signature_algo == WebhookEndpoint.SignatureAlgo.JWT else None
            if endpoint.signature_algo == WebhookEndpoint.SignatureAlgo.JWT and jwt_key is None:
                # The key was removed after the endpoint chose JWT: nothing to sign with; retried once it is back.
                result = sender.SendResult(None, 0, "", "WEBHOOK_JWT_PRIVATE_KEY is not set (the endpoint signs with jwt)")
            else:
                result = sender.post(
                    destination=destination,
                    body=body,
                    headers=signed_headers(secret=endpoint.signing_secret, body=body, event_id=str(event.event_id),
                                           algo=endpoint.signature_algo, jwt_key_pem=jwt_key,
                                           issuer=settings.PUBLIC_BASE_URL),
                    timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
                )
    return _attempt_record(delivery=delivery, result=result, now=now, retry=endpoint.active)


@transaction.atomic
def _attempt_record(*, delivery: WebhookDelivery, result: sender.SendResult, now: datetime, retry: bool) -> WebhookDelivery:
    number = WebhookAttempt.objects.filter(delivery_id=delivery.pk).count() + 1
    WebhookAttempt.objects.create(
        delivery_id=delivery.pk,
        number=number,
        started_at=now,
        duration_ms=result.duration_ms,
        status_code=result.status_code,
        response_excerpt=result.response_excerpt,
        error=result.error,
        succeeded=result.ok,
    )
    if result.ok:
        values = {"status": Status.SUCCEEDED, "succeeded_at": now, "next_attempt_at": None, "last_error": ""}
    elif retry and delivery.attempts < settings.WEBHOOK_MAX_ATTEMPTS:
        values = {"status": Status.RETRYING, "next_attempt_at": now + backoff_delay(delivery.attempts)}
    else:
        values = {"status": Status.FAILED, "next_attempt_at": None}
    if not result.ok:
        values["last_error"] = result.error or f"HTTP {result.status_code}"
        log.warning("webhook delivery %s attempt %s failed: %s", delivery.pk, number, values["last_error"])
    WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.SENDING).update(**values, updated_at=timezone.now())
    delivery.refresh_from_db()
    return delivery


def webhook_delivery_sweep(*, now: datetime | None = None) -> list[int]:
    """Enqueue due retries and pending rows whose message was lost; recover rows whose worker died mid-send.

    Returns the enqueued delivery ids. Enqueuing a row twice is harmless (the claim picks one sender).
    """
    now = now or timezone.now()
    stuck_before = now - timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS) - SWEEP_PENDING_MARGIN
    stuck = WebhookDelivery.objects.filter(status=Status.SENDING, claimed_at__lt=stuck_before)
    lost = "worker lost during send (no result recorded)"
    stuck.filter(attempts__gte=settings.WEBHOOK_MAX_ATTEMPTS).update(
        status=Status.FAILED, next_attempt_at=None, last_error=lost, updated_at=now
    )
    stuck.update(status=Status.RETRYING, next_attempt_at=now, last_error=lost, updated_at=now)
    due = (
        WebhookDelivery.objects.filter(
            Q(status=Status.RETRYING, next_attempt_at__lte=now)
            | Q(status=Status.PENDING, next_attempt_at__lte=now - SWEEP_PENDING_MARGIN)
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    ids = list(due)
    _enqueue(ids)
    return ids


@transaction.atomic
def webhook_delivery_resend(*, delivery_id: int, now: datetime | None = None) -> bool:
    """Queue a failed or succeeded delivery again with a fresh attempt budget (same event id and body)."""
    now = now or timezone.now()
    updated = WebhookDelivery.objects.filter(pk=delivery_id, status__in=(Status.FAILED, Status.SUCCEEDED)).update(
        status=Status.PENDING, attempts=0, next_attempt_at=now, claimed_at=None, updated_at=now
    )
    if updated:
        _enqueue_on_commit([delivery_id])
    return bool(updated)


def _destination_check(values: dict) -> None:
    """Refuse a webhook_url that resolves to a non-public or the hub's own address. Call before taking locks:
    it resolves the name (DNS)."""
    url = values.get("webhook_url")
    if url is None:
        return
    try:
        destination_resolve(url)
    except DestinationUnresolved:
        pass  # perhaps only for now; every send checks again
    except DestinationRefused:
        raise ValidationFailed("webhook url not allowed", details={"webhook_url": ["url_not_allowed"]}) from None


def _endpoint_rules(*, service: Service, values: dict, exclude_id: int | None = None) -> None:
    url = values.get("webhook_url")
    live = WebhookEndpoint.objects.filter(service=service, deleted_at__isnull=True).exclude(pk=exclude_id)
    if url is not None and live.filter(webhook_url=url).exists():
        raise ValidationFailed("webhook url used", details={"webhook_url": ["value_already_exist"]})
    if values.get("signature_algo") == WebhookEndpoint.SignatureAlgo.JWT and webhook_jwt_key_pem() is None:
        raise ValidationFailed("no JWT key", details={"signature_algo": ["value_is_invalid"]})
    if exclude_id is None and live.count() >= MAX_ENDPOINTS_PER_SERVICE:
        raise ValidationFailed("too many endpoints", details={"base": ["exceeded_limit"]})


def webhook_endpoint_create(*, service: Service, values: dict) -> WebhookEndpoint:
    """Add an endpoint (webhook_url, name, signature_algo, event_types; validated by the caller's serializer)."""
    _destination_check(values)
    return _endpoint_create(service=service, values=values)


@transaction.atomic
def _endpoint_create(*, service: Service, values: dict) -> WebhookEndpoint:
    Service.objects.select_for_update().get(pk=service.pk)  # serializes the 10-endpoint limit check
    _endpoint_rules(service=service, values=values)
    try:
        with transaction.atomic():
            return WebhookEndpoint.objects.create(service=service, **values)
    except IntegrityError:
        raise ValidationFailed("webhook url used", details={"webhook_url": ["value_already_exist"]}) from None


def webhook_endpoint_update(*, endpoint_id: int, values: dict) -> WebhookEndpoint:
    _destination_check(values)
    return _endpoint_update(endpoint_id=endpoint_id, values=values)


@transaction.atomic
def _endpoint_update(*, endpoint_id: int, values: dict) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id, deleted_at__isnull=True)
    _endpoint_rules(service=endpoint.service, values=values, exclude_id=endpoint.pk)
    for name, value in values.items():
        setattr(endpoint, name, value)
    endpoint.save()
    return endpoint


@transaction.atomic
def webhook_endpoint_delete(*, endpoint_id: int) -> WebhookEndpoint:
    """Deactivate and hide an endpoint; its deliveries stay for the record. Pending ones fail at their next send."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
    if endpoint.deleted_at is None:
        endpoint.active, endpoint.deleted_at = False, timezone.now()
        endpoint.save(update_fields=["active", "deleted_at", "updated_at"])
    return endpoint
