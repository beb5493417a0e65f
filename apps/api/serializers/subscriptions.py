from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from apps.core.money import SUPPORTED_CURRENCIES
from apps.subscriptions.models import Subscription

from .catalog import PlanIn, UsageThresholdIn
from .common import BlankableCharField, StrictIntegerField


class ChargeOverrideIn(serializers.Serializer):
    id = serializers.UUIDField()
    billable_metric_id = serializers.UUIDField(required=False)
    code = serializers.CharField(required=False)
    charge_model = serializers.CharField(required=False)
    invoice_display_name = BlankableCharField(max_length=255)
    min_amount_cents = StrictIntegerField(min_value=0, required=False)
    properties = serializers.DictField(required=False)
    filters = serializers.ListField(child=serializers.DictField(), required=False)
    tax_codes = serializers.ListField(child=serializers.CharField(), required=False)  # tax follows the province


class PlanOverridesIn(serializers.Serializer):
    """Lago's PlanOverridesObject (apps/catalog/plan_terms.py applies it)."""

    amount_cents = StrictIntegerField(min_value=0, required=False)
    amount_currency = serializers.ChoiceField(choices=SUPPORTED_CURRENCIES, required=False)
    name = serializers.CharField(max_length=255, required=False)
    invoice_display_name = BlankableCharField(max_length=255)
    description = BlankableCharField()
    trial_period = serializers.DecimalField(max_digits=6, decimal_places=2, min_value=Decimal(0), required=False)
    tax_codes = serializers.ListField(child=serializers.CharField(), required=False)
    minimum_commitment = serializers.DictField(required=False, allow_null=True)
    usage_thresholds = UsageThresholdIn(many=True, required=False)
    charges = ChargeOverrideIn(many=True, required=False)
    metadata = serializers.DictField(required=False, allow_null=True)

    validate_minimum_commitment = PlanIn.validate_minimum_commitment
    validate_usage_thresholds = PlanIn.validate_usage_thresholds

    def overrides(self) -> dict:
        values = dict(self.validated_data)
        for key in ("tax_codes", "metadata"):
            values.pop(key, None)
        if "trial_period" in values:
            values["trial_period"] = int(values["trial_period"])
        if "charges" in values:
            charges = []
            for item in values["charges"]:
                item = dict(item)
                item.pop("tax_codes", None)
                charges.append(item)
            values["charges"] = charges
        return values

    def validate_charges(self, value):
        from apps.invoicing.rating import validate_properties

        errors = {}
        for index, item in enumerate(value):
            if "properties" in item and item.get("charge_model"):
                problems = validate_properties(item["charge_model"], item["properties"])
                if problems:
                    errors[str(index)] = problems
        if errors:
            raise serializers.ValidationError(errors)
        return value


def plan_overrides_of(data) -> dict | None:
    """The body's `plan_overrides`, validated (422 `plan_overrides.<field>` when not), or None when absent."""
    if not isinstance(data, dict) or data.get("plan_overrides") is None:
        return None
    serializer = PlanOverridesIn(data=data["plan_overrides"])
    if not serializer.is_valid():
        raise serializers.ValidationError({"plan_overrides": serializer.errors})
    return serializer.overrides()


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
