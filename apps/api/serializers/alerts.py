from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from apps.invoicing.models import UsageAlert

from .common import BlankableCharField


class AlertThresholdIn(serializers.Serializer):
    code = BlankableCharField(max_length=255)
    # Lago takes an integer or a decimal string: minor units for amounts, units for units.
    value = serializers.DecimalField(max_digits=30, decimal_places=12, min_value=Decimal(0))
    recurring = serializers.BooleanField(default=False, allow_null=True)  # lago-python-client sends its nulls

    def to_internal_value(self, data):
        if isinstance(data, dict) and isinstance(data.get("value"), float):
            data = {**data, "value": repr(data["value"])}
        attrs = super().to_internal_value(data)
        attrs["recurring"] = bool(attrs.get("recurring"))
        return attrs


class AlertIn(serializers.Serializer):
    alert_type = serializers.ChoiceField(choices=UsageAlert.AlertType.values)
    code = serializers.CharField(max_length=255)
    name = BlankableCharField(max_length=255)
    billable_metric_code = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    thresholds = AlertThresholdIn(many=True)


class AlertUpdateIn(serializers.Serializer):
    code = serializers.CharField(max_length=255)
    name = BlankableCharField(max_length=255)
    billable_metric_code = serializers.CharField(max_length=255, required=False, allow_null=True, allow_blank=True)
    thresholds = AlertThresholdIn(many=True)
