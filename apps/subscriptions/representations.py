"""Lago's Subscription body: a plain function of the model, used by the API and by webhook payloads."""
from __future__ import annotations

from django.utils import timezone

from apps.catalog.representations import plan_out
from apps.core.representations import ts

from .models import Subscription
from .selectors import current_period_bounds, starts_at


def subscription_out(subscription: Subscription, *, with_plan: bool = False) -> dict:
    plan = subscription.plan
    previous = subscription.previous_subscription
    successor = getattr(subscription, "next_subscription", None) if subscription.pk else None
    period_from = period_to = None
    if subscription.status == Subscription.Status.ACTIVE:
        period_from, period_to = current_period_bounds(subscription, at=timezone.now())
    body = {
        "lago_id": str(subscription.lago_id),
        "external_id": subscription.external_id,
        "lago_customer_id": str(subscription.account_link.lago_id),
        "external_customer_id": subscription.account_link.external_id,
        "name": subscription.name or None,
        "plan_code": plan.code,
        "plan_amount_cents": plan.amount_cents,
        "plan_amount_currency": plan.amount_currency,
        "status": subscription.status,
        "billing_time": subscription.billing_time,
        "subscription_at": ts(subscription.subscription_at),
        "started_at": ts(subscription.started_at),
        "ending_at": ts(subscription.ending_at),
        "terminated_at": ts(subscription.terminated_at),
        "canceled_at": ts(subscription.canceled_at),
        "created_at": ts(subscription.created_at),
        "previous_plan_code": previous.plan.code if previous else None,
        "next_plan_code": successor.plan.code if successor and successor.status == "pending" else None,
        "downgrade_plan_date": (
            starts_at(successor).date().isoformat() if successor and successor.status == "pending" else None
        ),
        "current_billing_period_started_at": ts(period_from),
        "current_billing_period_ending_at": ts(period_to),
        "trial_ended_at": None,
        "on_termination_credit_note": subscription.on_termination_credit_note or None,
        "on_termination_invoice": "generate",
    }
    if with_plan:
        body["plan"] = plan_out(plan)
    return body
