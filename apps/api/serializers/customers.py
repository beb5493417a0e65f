from __future__ import annotations

from rest_framework import serializers

from apps.core.geo import COUNTRY_CODES
from apps.core.money import SUPPORTED_CURRENCIES
from apps.customers.models import CANADIAN_PROVINCES, TIMEZONE_CHOICES, Customer

from .common import BlankableCharField, StrictIntegerField


class MetadataItemIn(serializers.Serializer):
    key = serializers.CharField(max_length=255)
    value = serializers.CharField(max_length=255, allow_blank=True)
    display_in_invoice = serializers.BooleanField(default=False)


class BillingConfigurationIn(serializers.Serializer):
    invoice_grace_period = StrictIntegerField(min_value=0, max_value=365, required=False, allow_null=True)
    payment_provider = serializers.ChoiceField(choices=["stripe"], required=False, allow_null=True)
    document_locale = BlankableCharField(max_length=8)


class CustomerIn(serializers.Serializer):
    external_id = serializers.CharField(max_length=255)
    name = BlankableCharField(max_length=255)
    firstname = BlankableCharField(max_length=255)
    lastname = BlankableCharField(max_length=255)
    legal_name = BlankableCharField(max_length=255)
    legal_number = BlankableCharField(max_length=255)
    tax_identification_number = BlankableCharField(max_length=255)
    customer_type = serializers.ChoiceField(choices=Customer.CustomerType.choices, required=False, allow_null=True)
    email = serializers.EmailField(required=False, allow_blank=True, allow_null=True, max_length=255)
    phone = BlankableCharField(max_length=64)
    url = BlankableCharField(max_length=255)
    address_line1 = BlankableCharField(max_length=255)
    address_line2 = BlankableCharField(max_length=255)
    city = BlankableCharField(max_length=255)
    zipcode = BlankableCharField(max_length=32)
    state = BlankableCharField(max_length=64)
    country = serializers.ChoiceField(choices=sorted(COUNTRY_CODES), required=False, allow_null=True, allow_blank=True)
    currency = serializers.ChoiceField(choices=SUPPORTED_CURRENCIES, required=False, allow_null=True, allow_blank=True)
    timezone = serializers.ChoiceField(choices=TIMEZONE_CHOICES, required=False, allow_null=True, allow_blank=True)
    net_payment_term = StrictIntegerField(min_value=0, max_value=365, required=False, allow_null=True)
    metadata = MetadataItemIn(many=True, required=False)
    billing_configuration = BillingConfigurationIn(required=False)

    def to_internal_value(self, data):
        if isinstance(data, dict) and isinstance(data.get("country"), str):
            data = {**data, "country": data["country"].upper()}
        return super().to_internal_value(data)

    def validate(self, attrs):
        country = attrs.get("country")
        state = attrs.get("state")
        if country == "CA" and state:
            if state.upper() not in CANADIAN_PROVINCES:
                raise serializers.ValidationError({"state": [serializers.ErrorDetail("value_is_invalid", code="value_is_invalid")]})
            attrs["state"] = state.upper()
        return attrs

    def customer_attributes(self) -> dict:
        """The validated body as Customer model attributes (only what was sent)."""
        data = dict(self.validated_data)
        data.pop("external_id")
        attributes: dict = {}
        for field, value in data.items():
            if field == "billing_configuration":
                if "invoice_grace_period" in value:
                    attributes["invoice_grace_period"] = value["invoice_grace_period"]
            elif field == "metadata":
                attributes["metadata"] = [dict(item) for item in value]
            elif field == "net_payment_term":
                attributes[field] = value or 0
            else:
                attributes[field] = "" if value is None else value
        return attributes
