from __future__ import annotations

from rest_framework import serializers

from apps.core.geo import COUNTRY_CODES
from apps.core.money import SUPPORTED_CURRENCIES
from apps.customers.models import CANADIAN_PROVINCES, TIMEZONE_CHOICES, AccountLink, Customer

from .common import BlankableCharField, StrictIntegerField, ts


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


def customer_out(link: AccountLink) -> dict:
    customer = link.customer
    return {
        "lago_id": str(link.lago_id),
        "external_id": link.external_id,
        "sequential_id": customer.pk,
        "slug": f"NEXA-{customer.pk:06d}",
        "created_at": ts(link.created_at),
        "updated_at": ts(max(link.updated_at, customer.updated_at)),
        "applicable_timezone": customer.applicable_timezone,
        "name": customer.name or None,
        "firstname": customer.firstname or None,
        "lastname": customer.lastname or None,
        "legal_name": customer.legal_name or None,
        "legal_number": customer.legal_number or None,
        "tax_identification_number": customer.tax_identification_number or None,
        "customer_type": customer.customer_type or None,
        "account_type": "customer",
        "email": customer.email or None,
        "phone": customer.phone or None,
        "url": customer.url or None,
        "address_line1": customer.address_line1 or None,
        "address_line2": customer.address_line2 or None,
        "city": customer.city or None,
        "zipcode": customer.zipcode or None,
        "state": customer.state or None,
        "country": customer.country or None,
        "currency": customer.currency or None,
        "timezone": customer.timezone or None,
        "net_payment_term": customer.net_payment_term,
        "billing_configuration": {
            "invoice_grace_period": customer.invoice_grace_period,
            "payment_provider": "stripe",
            "document_locale": "en",
        },
        "shipping_address": {},
        "metadata": [
            {"lago_id": None, "key": item.get("key"), "value": item.get("value"),
             "display_in_invoice": item.get("display_in_invoice", False), "created_at": ts(customer.created_at)}
            for item in customer.metadata
        ],
        "taxes": [],
        "integration_customers": [],
        "error_details": [],
    }
