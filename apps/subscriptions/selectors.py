"""Reads for subscriptions, scoped by the calling service."""
from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from apps.core.exceptions import NotFound
from apps.customers.models import Service

from .models import Subscription
from .periods import local_date, period_bounds_utc, period_containing


def subscription_list(
    *,
    service: Service,
    external_customer_id: str | None = None,
    plan_code: str | None = None,
    statuses: list[str] | None = None,
) -> QuerySet[Subscription]:
    queryset = Subscription.objects.filter(service=service).select_related("plan", "customer", "account_link")
    if external_customer_id:
        queryset = queryset.filter(account_link__external_id=external_customer_id, account_link__deleted_at__isnull=True)
    if plan_code:
        queryset = queryset.filter(plan__code=plan_code)
    queryset = queryset.filter(status__in=statuses or [Subscription.Status.ACTIVE])
    return queryset.order_by("-created_at", "-id")


def subscription_get(*, service: Service, external_id: str, status: str | None = None) -> Subscription:
    """Return the service's subscription by external id (Lago looks up `active` unless told otherwise)."""
    statuses = [status] if status else [Subscription.Status.ACTIVE]
    subscription = subscription_list(service=service, statuses=statuses).filter(external_id=external_id).first()
    if subscription is None:
        raise NotFound("subscription")
    return subscription


def current_period_bounds(subscription: Subscription, *, at: datetime) -> tuple[datetime, datetime]:
    """Return [start, end) in UTC of the billing period containing `at` (customer's timezone)."""
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


def starts_at(subscription: Subscription) -> datetime:
    """The instant a pending subscription starts: its plan change's `activates_at`, else `subscription_at`."""
    return subscription.activates_at or subscription.subscription_at
