from __future__ import annotations

from rest_framework import serializers

from apps.subscriptions.models import Subscription
from apps.subscriptions.services import current_period_bounds, starts_at

from .catalog import plan_out
from .common import BlankableCharField, ts


class SubscriptionIn(serializers.Serializer):
    external_customer_id = serializers.CharField(max_length=255)
    plan_code = serializers.CharField(max_length=255)
    external_id = serializers.CharField(max_length=255)
    name = BlankableCharField(max_length=255)
    billing_time = serializers.ChoiceField(choices=Subscription.BillingTime.values, default="calendar")
    subscription_at = serializers.DateTimeField(required=False, allow_null=True)
    ending_at = serializers.DateTimeField(required=False, allow_null=True)

    def validate(self, attrs):
        start, end = attrs.get("subscription_at"), attrs.get("ending_at")
        if start and end and end <= start:
            raise serializers.ValidationError({"ending_at": [serializers.ErrorDetail("invalid_date", code="invalid_date")]})
        return attrs


class SubscriptionUpdateIn(serializers.Serializer):
    name = BlankableCharField(max_length=255)
    ending_at = serializers.DateTimeField(required=False, allow_null=True)
    subscription_at = serializers.DateTimeField(required=False)


def subscription_out(subscription: Subscription, *, with_plan: bool = False) -> dict:
    plan = subscription.plan
    previous = subscription.previous_subscription
    successor = getattr(subscription, "next_subscription", None) if subscription.pk else None
    period_from = period_to = None
    if subscription.status == Subscription.Status.ACTIVE:
        from django.utils import timezone

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
