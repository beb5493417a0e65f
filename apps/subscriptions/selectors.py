"""Reads for subscriptions, scoped by the calling service."""
from __future__ import annotations

from django.db.models import QuerySet

from apps.core.exceptions import NotFound
from apps.customers.models import Service

from .models import Subscription


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
