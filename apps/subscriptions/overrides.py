"""Lago's `plan_overrides` on POST and PUT /subscriptions: a subscription billed on its own copy of its plan.

The copy is a child plan (apps/catalog/plan_terms.py), with the parent's code; the close, current usage and
progressive billing read it as any plan. Retrying a POST with the parent plan's code keeps the subscription on its
child (it is the same plan to the app), and overriding again changes the child in place (Lago).
"""
from __future__ import annotations

from django.db import transaction

from apps.catalog.plan_terms import plan_override, plan_override_update
from apps.customers.models import Service

from .models import Subscription
from .services import SubscriptionRequest, subscription_create, subscription_update


@transaction.atomic
def subscription_create_overridden(
    *, service: Service, request: SubscriptionRequest, overrides: dict | None
) -> Subscription:
    """`subscription_create`, on a child of the plan when `overrides` are given. Idempotent like it: a live
    subscription already on the plan or on a child of it is returned as it is."""
    current = (
        Subscription.objects.select_related("plan")
        .filter(service=service, external_id=request.external_id, status__in=("active", "pending"))
        .order_by("status").first()
    )
    if current is not None and current.plan.parent_id == request.plan.pk:
        return subscription_create(service=service, request=_on(request, current.plan))
    if overrides:
        request = _on(request, plan_override(plan=request.plan, overrides=overrides))
    return subscription_create(service=service, request=request)


@transaction.atomic
def subscription_plan_override(*, subscription: Subscription, overrides: dict) -> Subscription:
    """Apply `overrides` to a subscription's plan: its child changes in place, else it moves to a new child."""
    subscription = Subscription.objects.select_for_update().select_related("plan").get(pk=subscription.pk)
    if subscription.plan.parent_id is not None:
        plan_override_update(child=subscription.plan, overrides=overrides)
    else:
        subscription.plan = plan_override(plan=subscription.plan, overrides=overrides)
        subscription.save(update_fields=["plan", "updated_at"])
    return Subscription.objects.select_related("plan").get(pk=subscription.pk)


@transaction.atomic
def subscription_update_overridden(*, subscription: Subscription, values: dict, overrides: dict | None) -> Subscription:
    """`subscription_update` and, when given, `subscription_plan_override`, in one transaction (PUT /subscriptions)."""
    subscription = subscription_update(subscription=subscription, values=values)
    if overrides:
        subscription = subscription_plan_override(subscription=subscription, overrides=overrides)
    return subscription


def _on(request: SubscriptionRequest, plan) -> SubscriptionRequest:
    from dataclasses import replace

    return replace(request, plan=plan)


@transaction.atomic
def subscription_own_plan(*, subscription: Subscription) -> Subscription:
    """The subscription on its own plan, as before writing its charges or filters (Lago's
    /subscriptions/{id}/charges): one without moves to a copy of its plan (a child with no override yet)."""
    subscription = Subscription.objects.select_for_update().select_related("plan").get(pk=subscription.pk)
    if subscription.plan.parent_id is None:
        subscription.plan = plan_override(plan=subscription.plan, overrides={})
        subscription.save(update_fields=["plan", "updated_at"])
    return Subscription.objects.select_related("plan").get(pk=subscription.pk)


@transaction.atomic
def subscription_charge_filter_write(*, subscription: Subscription, charge_code: str, data: dict,
                                     filter_id: str | None = None):
    """Add (`filter_id` None) or change a filter of the subscription's own plan's charge, moving it to its own plan
    first; a refused filter leaves the subscription where it was. `filter_id` may name the catalog filter copied."""
    from apps.catalog.selectors import own_charge_filter_get, plan_charge_get
    from apps.catalog.services import charge_filter_write

    charge = plan_charge_get(plan=subscription_own_plan(subscription=subscription).plan, code=charge_code)
    found = own_charge_filter_get(charge=charge, lago_id=filter_id) if filter_id is not None else None
    return charge_filter_write(charge=charge, data=data, charge_filter=found)


@transaction.atomic
def subscription_charge_filter_delete(*, subscription: Subscription, charge_code: str, filter_id: str):
    """Soft-delete a filter of the subscription's own plan's charge, moving it to its own plan first."""
    from apps.catalog.selectors import own_charge_filter_get, plan_charge_get
    from apps.catalog.services import charge_filter_delete

    charge = plan_charge_get(plan=subscription_own_plan(subscription=subscription).plan, code=charge_code)
    return charge_filter_delete(charge_filter=own_charge_filter_get(charge=charge, lago_id=filter_id))
