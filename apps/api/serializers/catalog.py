from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers

from apps.catalog.models import BillableMetric, Charge, Coupon, Plan
from apps.core.geo import COUNTRY_CODES
from apps.core.money import SUPPORTED_CURRENCIES
from apps.customers.models import CANADIAN_PROVINCES

from .common import BlankableCharField, StrictIntegerField


class MetricFilterIn(serializers.Serializer):
    key = serializers.CharField(max_length=255)
    values = serializers.ListField(child=serializers.CharField(max_length=255), allow_empty=False)


class BillableMetricIn(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    code = serializers.CharField(max_length=255)
    description = BlankableCharField()
    aggregation_type = serializers.ChoiceField(choices=BillableMetric.Aggregation.values)
    field_name = BlankableCharField(max_length=255)
    recurring = serializers.BooleanField(default=False)
    weighted_interval = serializers.ChoiceField(choices=["seconds"], required=False, allow_null=True)
    rounding_function = serializers.ChoiceField(
        choices=BillableMetric.RoundingFunction.values, required=False, allow_null=True
    )
    rounding_precision = StrictIntegerField(required=False, allow_null=True, min_value=-15, max_value=15)
    filters = MetricFilterIn(many=True, required=False)

    def model_values(self) -> dict:
        values = dict(self.validated_data)
        for field in ("weighted_interval", "rounding_function"):
            if field in values and values[field] is None:
                values[field] = ""
        if "filters" in values:
            values["filters"] = [dict(item) for item in values["filters"]]
        return values


class ChargeFilterIn(serializers.Serializer):
    """Lago's ChargeFilterInput: the filter's values per metric filter key and its own charge-model properties."""

    invoice_display_name = BlankableCharField(max_length=255)
    properties = serializers.DictField(required=False, default=dict)
    values = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField(max_length=255), allow_empty=False), allow_empty=False
    )

    def validate_properties(self, value):
        return properties_group_keys_normalized(value)


def properties_group_keys_normalized(properties):
    """Properties as stored: group keys under `pricing_group_keys` (Lago moves a deprecated `grouped_by` there)."""
    from apps.catalog.pricing_groups import properties_group_keys_normalized as normalized

    return normalized(properties)


def properties_errors(charge_model: str, properties: dict) -> dict:
    """Lago's property error codes for `properties` under `charge_model`, as DRF error details ({} when valid)."""
    from apps.invoicing.rating import validate_properties

    return {field: [serializers.ErrorDetail(code, code=code) for code in codes]
            for field, codes in validate_properties(charge_model, properties or {}).items()}


class ChargeIn(serializers.Serializer):
    billable_metric_id = serializers.UUIDField()
    charge_model = serializers.ChoiceField(choices=Charge.ChargeModel.values)
    code = serializers.CharField(max_length=255, required=False)
    invoice_display_name = BlankableCharField(max_length=255)
    pay_in_advance = serializers.BooleanField(default=False)
    invoiceable = serializers.BooleanField(default=True)
    prorated = serializers.BooleanField(default=False)
    min_amount_cents = StrictIntegerField(min_value=0, default=0)
    properties = serializers.DictField(required=False, default=dict)
    filters = ChargeFilterIn(many=True, required=False, default=list)
    # Tax is decided by the customer's province (Canadian rules); accepted for Lago compatibility.
    tax_codes = serializers.ListField(child=serializers.CharField(), required=False)

    def validate_properties(self, value):
        return properties_group_keys_normalized(value)

    def validate(self, attrs):
        errors = properties_errors(attrs["charge_model"], attrs.get("properties"))
        # Each filter prices with the charge's model (Lago validates a filter's properties as its charge's).
        filter_errors = {
            index: {"properties": found} for index, item in enumerate(attrs.get("filters") or [])
            if (found := properties_errors(attrs["charge_model"], item.get("properties")))
        }
        if filter_errors:
            errors["filters"] = filter_errors
        if errors:
            raise serializers.ValidationError(errors)
        attrs["filters"] = [dict(item) for item in attrs.get("filters") or []]
        attrs.pop("tax_codes", None)
        return attrs


class MinimumCommitmentIn(serializers.Serializer):
    amount_cents = StrictIntegerField(min_value=0)
    invoice_display_name = BlankableCharField(max_length=255)
    # Tax is decided by the customer's province (Canadian rules); accepted for Lago compatibility.
    tax_codes = serializers.ListField(child=serializers.CharField(), required=False)


class UsageThresholdIn(serializers.Serializer):
    amount_cents = StrictIntegerField(min_value=1)
    recurring = serializers.BooleanField(default=False)
    threshold_display_name = BlankableCharField(max_length=255)


class PlanIn(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    code = serializers.CharField(max_length=255)
    interval = serializers.ChoiceField(choices=Plan.Interval.values)
    amount_cents = StrictIntegerField(min_value=0)
    amount_currency = serializers.ChoiceField(choices=SUPPORTED_CURRENCIES)
    pay_in_advance = serializers.BooleanField(default=False)
    trial_period = serializers.DecimalField(max_digits=6, decimal_places=2, min_value=Decimal(0), required=False, allow_null=True)
    description = BlankableCharField()
    invoice_display_name = BlankableCharField(max_length=255)
    charges = ChargeIn(many=True, required=False)
    tax_codes = serializers.ListField(child=serializers.CharField(), required=False)
    # Lago: an object sets the commitment, {} removes it, null leaves it (apps/catalog/plan_terms.py).
    minimum_commitment = serializers.DictField(required=False, allow_null=True)
    usage_thresholds = UsageThresholdIn(many=True, required=False)

    def validate_usage_thresholds(self, value):
        if sum(1 for item in value if item.get("recurring")) > 1:
            raise serializers.ValidationError("only_one_recurring_threshold", code="only_one_recurring_threshold")
        fixed = [item["amount_cents"] for item in value if not item.get("recurring")]
        if len(fixed) != len(set(fixed)):
            raise serializers.ValidationError("duplicated_thresholds", code="value_already_exist")
        return [dict(item) for item in value]

    def validate_minimum_commitment(self, value):
        if not value:
            return value
        inner = MinimumCommitmentIn(data=value, partial=self.partial)
        inner.is_valid(raise_exception=True)
        return {key: item for key, item in inner.validated_data.items() if key != "tax_codes"}

    def terms(self) -> dict:
        """The plan's terms given in the body (`apps.catalog.plan_terms`): minimum commitment, usage thresholds."""
        return {key: self.validated_data[key] for key in ("minimum_commitment", "usage_thresholds")
                if key in self.validated_data}

    def model_values(self) -> tuple[dict, list[dict] | None]:
        values = dict(self.validated_data)
        charges = values.pop("charges", None)
        values.pop("tax_codes", None)
        values.pop("minimum_commitment", None)
        values.pop("usage_thresholds", None)
        if "trial_period" in values:
            values["trial_period"] = int(values["trial_period"] or 0)
        return values, [dict(charge) for charge in charges] if charges is not None else None


class TaxIn(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    code = serializers.CharField(max_length=255)
    rate = serializers.DecimalField(max_digits=9, decimal_places=5, min_value=Decimal(0), max_value=Decimal(100))
    description = BlankableCharField()
    country = serializers.ChoiceField(choices=sorted(COUNTRY_CODES), required=False, allow_blank=True)
    provinces = serializers.ListField(child=serializers.CharField(max_length=8), required=False)
    applied_to_organization = serializers.BooleanField(required=False)

    def to_internal_value(self, data):
        if isinstance(data, dict) and isinstance(data.get("rate"), float):
            # A JSON float rate would be accepted by DecimalField via str(); Lago sends strings.
            data = {**data, "rate": repr(data["rate"])}
        return super().to_internal_value(data)

    def validate(self, attrs):
        provinces = attrs.get("provinces") or []
        if provinces and attrs.get("country", "CA") == "CA":
            bad = [p for p in provinces if p.upper() not in CANADIAN_PROVINCES]
            if bad:
                raise serializers.ValidationError({"provinces": [serializers.ErrorDetail("value_is_invalid", code="value_is_invalid")]})
            attrs["provinces"] = [p.upper() for p in provinces]
        attrs.pop("applied_to_organization", None)
        return attrs


class AddOnIn(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    code = serializers.CharField(max_length=255)
    invoice_display_name = BlankableCharField(max_length=255)
    description = BlankableCharField()
    amount_cents = StrictIntegerField(min_value=1)  # Lago: greater than 0
    amount_currency = serializers.ChoiceField(choices=SUPPORTED_CURRENCIES)
    # Tax is decided by the customer's province (Canadian rules); accepted for Lago compatibility.
    tax_codes = serializers.ListField(child=serializers.CharField(), required=False)

    def validate(self, attrs):
        attrs.pop("tax_codes", None)
        return attrs


class _Rate(serializers.DecimalField):
    """A percentage as Lago sends it: a decimal string, or a JSON number from lago-python-client (a float)."""

    def __init__(self, **kwargs):
        super().__init__(max_digits=10, decimal_places=5, min_value=Decimal("0.00001"), max_value=Decimal(100), **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, float):
            data = repr(data)  # the shortest repr round-trips: 12.5 -> "12.5", never a binary expansion
        return super().to_internal_value(data)


class CouponLimitsIn(serializers.Serializer):
    plan_codes = serializers.ListField(child=serializers.CharField(max_length=255), required=False, allow_null=True)
    billable_metric_codes = serializers.ListField(child=serializers.CharField(max_length=255), required=False,
                                                  allow_null=True)


class CouponIn(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    code = serializers.CharField(max_length=255)
    description = BlankableCharField()
    coupon_type = serializers.ChoiceField(choices=Coupon.CouponType.values)
    amount_cents = StrictIntegerField(min_value=1, required=False, allow_null=True)
    amount_currency = serializers.ChoiceField(choices=SUPPORTED_CURRENCIES, required=False, allow_null=True)
    percentage_rate = _Rate(required=False, allow_null=True)
    frequency = serializers.ChoiceField(choices=Coupon.Frequency.values)
    frequency_duration = StrictIntegerField(min_value=1, required=False, allow_null=True)
    reusable = serializers.BooleanField(default=True)
    expiration = serializers.ChoiceField(choices=Coupon.Expiration.values)
    expiration_at = serializers.DateTimeField(required=False, allow_null=True)
    applies_to = CouponLimitsIn(required=False, allow_null=True)

    def model_values(self) -> tuple[dict, list[str] | None, list[str] | None]:
        values = dict(self.validated_data)
        limits = values.pop("applies_to", None)
        if values.get("amount_currency") is None and "amount_currency" in values:
            values["amount_currency"] = ""
        if limits is None:
            return values, None, None
        return values, list(limits.get("plan_codes") or []), list(limits.get("billable_metric_codes") or [])


class AppliedCouponIn(serializers.Serializer):
    external_customer_id = serializers.CharField(max_length=255)
    coupon_code = serializers.CharField(max_length=255)
    amount_cents = StrictIntegerField(min_value=1, required=False, allow_null=True)
    amount_currency = serializers.ChoiceField(choices=SUPPORTED_CURRENCIES, required=False, allow_null=True)
    percentage_rate = _Rate(required=False, allow_null=True)
    frequency = serializers.ChoiceField(choices=Coupon.Frequency.values, required=False, allow_null=True)
    frequency_duration = StrictIntegerField(min_value=1, required=False, allow_null=True)
