from __future__ import annotations

from rest_framework import serializers

from apps.subscriptions.models import Subscription

from .common import BlankableCharField, StrictIntegerField


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


class LifetimeUsageIn(serializers.Serializer):
    external_historical_usage_amount_cents = StrictIntegerField(min_value=0)
