"""Writes for subscriptions: create (with Lago's upgrade/downgrade rules), update, terminate."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.catalog.models import Plan
from apps.core.exceptions import ValidationFailed
from apps.customers.models import AccountLink, Service
from apps.customers.services import customer_upsert
from apps.invoicing.periods import local_date, period_containing
from apps.webhooks.services import webhook_subscription_event_record

from .models import Subscription, SubscriptionChange, SubscriptionChangeHorizon


@dataclass(frozen=True)
class SubscriptionRequest:
    external_id: str
    external_customer_id: str
    plan: Plan
    name: str = ""
    billing_time: str = Subscription.BillingTime.CALENDAR
    subscription_at: datetime | None = None
    ending_at: datetime | None = None


def current_period_bounds(subscription: Subscription, *, at: datetime) -> tuple[datetime, datetime]:
    """Return [start, end) in UTC of the billing period containing `at` (customer's timezone)."""
    from apps.invoicing.periods import period_bounds_utc

    tz = subscription.customer.applicable_timezone
    anchor = local_date(subscription.subscription_at, tz)
    day = max(local_date(at, tz), anchor)
    period = period_containing(
        interval=subscription.plan.interval, billing_time=subscription.billing_time, anchor_date=anchor, at=day
    )
    return period_bounds_utc(period, tz)


def current_period_end(subscription: Subscription, *, at: datetime) -> datetime:
    """Return the first instant after the billing period containing `at`."""
    return current_period_bounds(subscription, at=at)[1]


@transaction.atomic
def subscription_create(*, service: Service, request: SubscriptionRequest) -> Subscription:
    """Create a subscription, Lago-style. Idempotent by external_id for the same plan.

    An active subscription with the same external_id on another plan is upgraded at once
    (plan with a higher yearly amount) or downgraded at its period end (pending successor).
    """
    now = timezone.now()
    if request.plan.service_id != service.pk:
        raise ValueError("plan belongs to another service")  # selectors scope plans; this is a bug guard
    link = _link_for(service=service, external_customer_id=request.external_customer_id)
    current = (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("plan", "customer")
        .filter(service=service, external_id=request.external_id, status__in=("active", "pending"))
        .order_by("status")  # "active" before "pending"
        .first()
    )
    if current is not None:
        if current.account_link_id != link.pk:
            raise ValidationFailed("subscription id used", details={"external_id": ["value_already_exist"]})
        if current.plan_id == request.plan.pk:
            return current
        if current.status == Subscription.Status.PENDING:
            # A pending subscription simply changes plan before it starts.
            current.plan = request.plan
            current.save(update_fields=["plan", "updated_at"])
            return current
        return _change_plan(current=current, request=request, now=now)

    starts_at = request.subscription_at or now
    status = Subscription.Status.PENDING if starts_at > now else Subscription.Status.ACTIVE
    subscription = _insert(
        service=service,
        link=link,
        request=request,
        status=status,
        subscription_at=starts_at,
        started_at=starts_at if status == Subscription.Status.ACTIVE else None,
        previous=None,
    )
    if status == Subscription.Status.ACTIVE:
        webhook_subscription_event_record(subscription=subscription, event_type="subscription.started")
    return subscription


def _link_for(*, service: Service, external_customer_id: str) -> AccountLink:
    link = AccountLink.objects.filter(
        service=service, external_id=external_customer_id, deleted_at__isnull=True
    ).first()
    # Lago creates an unknown customer on the fly.
    return link or customer_upsert(service=service, external_id=external_customer_id, attributes={})


def _insert(*, service, link, request, status, subscription_at, started_at, previous) -> Subscription:
    try:
        with transaction.atomic():
            return Subscription.objects.create(
                service=service,
                account_link=link,
                customer=link.customer,
                plan=request.plan,
                external_id=request.external_id,
                name=request.name,
                status=status,
                billing_time=request.billing_time,
                subscription_at=subscription_at,
                started_at=started_at,
                ending_at=request.ending_at,
                previous_subscription=previous,
            )
    except IntegrityError:
        # A concurrent create with the same external_id won the race.
        raise ValidationFailed("subscription id used", details={"external_id": ["value_already_exist"]}) from None


def _change_plan(*, current: Subscription, request: SubscriptionRequest, now: datetime) -> Subscription:
    if request.plan.amount_currency != current.plan.amount_currency:
        raise ValidationFailed("currency mismatch", details={"currency": ["currencies_does_not_match"]})
    if request.plan.yearly_amount_cents >= current.plan.yearly_amount_cents:
        # Upgrade: applied at once; rating credits the unused part of an in-advance fee.
        current.status = Subscription.Status.TERMINATED
        current.terminated_at = now
        current.save(update_fields=["status", "terminated_at", "updated_at"])
        successor = _insert(
            service=current.service,
            link=current.account_link,
            request=request,
            status=Subscription.Status.ACTIVE,
            subscription_at=now if request.billing_time == "anniversary" else current.subscription_at,
            started_at=now,
            previous=current,
        )
        webhook_subscription_event_record(subscription=current, event_type="subscription.terminated")
        webhook_subscription_event_record(subscription=successor, event_type="subscription.started")
        return successor
    # Downgrade: the new plan starts when the current period ends.
    Subscription.objects.filter(
        service=current.service, external_id=current.external_id, status=Subscription.Status.PENDING
    ).delete()
    period_end = current_period_end(current, at=now)
    return _insert(
        service=current.service,
        link=current.account_link,
        request=request,
        status=Subscription.Status.PENDING,
        subscription_at=period_end,
        started_at=None,
        previous=current,
    )


@transaction.atomic
def subscription_update(*, subscription: Subscription, values: dict) -> Subscription:
    subscription = Subscription.objects.select_for_update().get(pk=subscription.pk)
    if "subscription_at" in values and subscription.status != Subscription.Status.PENDING:
        raise ValidationFailed("only pending", details={"subscription_at": ["value_is_invalid"]})
    for field, value in values.items():
        setattr(subscription, field, value)
    subscription.save()
    return subscription


@transaction.atomic
def subscription_terminate(*, subscription_id: int, at: datetime | None = None) -> Subscription:
    """Terminate an active subscription, or cancel a pending one. Idempotent."""
    subscription = Subscription.objects.select_for_update().get(pk=subscription_id)
    now = at or timezone.now()
    if subscription.status == Subscription.Status.PENDING:
        subscription.status = Subscription.Status.CANCELED
        subscription.canceled_at = now
        subscription.save(update_fields=["status", "canceled_at", "updated_at"])
        return subscription
    if subscription.status != Subscription.Status.ACTIVE:
        return subscription
    subscription.status = Subscription.Status.TERMINATED
    subscription.terminated_at = now
    subscription.save(update_fields=["status", "terminated_at", "updated_at"])
    # A scheduled downgrade cannot start once its predecessor is terminated early.
    Subscription.objects.filter(previous_subscription=subscription, status=Subscription.Status.PENDING).update(
        status=Subscription.Status.CANCELED, canceled_at=now, updated_at=now
    )
    webhook_subscription_event_record(subscription=subscription, event_type="subscription.terminated")
    return subscription


@transaction.atomic
def subscription_activate_due(*, now: datetime | None = None) -> int:
    """Start pending subscriptions whose start has come (downgrades, future starts). Returns how many."""
    now = now or timezone.now()
    started = 0
    due = Subscription.objects.select_for_update(skip_locked=True).filter(
        status=Subscription.Status.PENDING, subscription_at__lte=now
    )
    for subscription in due:
        previous = subscription.previous_subscription
        if previous is not None and previous.status == Subscription.Status.ACTIVE:
            subscription_terminate(subscription_id=previous.pk, at=subscription.subscription_at)
        subscription.status = Subscription.Status.ACTIVE
        subscription.started_at = subscription.subscription_at
        subscription.save(update_fields=["status", "started_at", "updated_at"])
        webhook_subscription_event_record(subscription=subscription, event_type="subscription.started")
        started += 1
    return started


# Ingest's cached subscription lookups last at most this long without a fresh snapshot
# (apps/usage/subscription_cache.py); pruning keeps every change a live cache could still miss.
SUBSCRIPTION_LOOKUP_TTL_SECONDS = 600


def subscription_changes_prune(*, now: datetime | None = None) -> int:
    """Delete the change-log rows no cached subscription lookup can still need; return how many.

    A row matters to a cache only if its transaction committed after the cache's snapshot, and
    caches are at most SUBSCRIPTION_LOOKUP_TTL_SECONDS old. A horizon kept at least twice that long
    ago holds a snapshot's xmin: every transaction below it had ended by then, before any live
    cache's snapshot, so its rows are visible to all of them and can go. (A row's own timestamp
    would not do: a long transaction commits long after it wrote the row.)
    """
    now = now or timezone.now()
    keep_after = now - timedelta(seconds=2 * SUBSCRIPTION_LOOKUP_TTL_SECONDS)
    with transaction.atomic():
        horizons = SubscriptionChangeHorizon.objects.select_for_update().order_by("-taken_at")
        ripe = horizons.filter(taken_at__lte=keep_after).first()
        deleted = 0
        if ripe is not None:
            deleted, _ = SubscriptionChange.objects.filter(xid__lt=ripe.horizon_xid).delete()
            SubscriptionChangeHorizon.objects.filter(taken_at__lte=ripe.taken_at).delete()
        newest = horizons.first()
        if newest is None or newest.taken_at <= now - timedelta(seconds=SUBSCRIPTION_LOOKUP_TTL_SECONDS):
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                (xmin,) = cursor.fetchone()
            SubscriptionChangeHorizon.objects.create(horizon_xid=xmin, taken_at=now)
    return deleted
