"""Lago's wallet and wallet transaction bodies."""
from __future__ import annotations

from rest_framework import serializers

from apps.core.money import SUPPORTED_CURRENCIES

from .common import BlankableCharField


class _Decimal(serializers.DecimalField):
    """A decimal as Lago sends it: a string, or a JSON number from lago-python-client (its shortest repr)."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, float):
            data = repr(data)
        if isinstance(data, str) and not data.strip().isascii():
            self.fail("invalid")
        return super().to_internal_value(data)


def _credits(**kwargs):
    return _Decimal(max_digits=30, decimal_places=5, required=False, allow_null=True, **kwargs)


class MetadataIn(serializers.Serializer):
    key = serializers.CharField(max_length=255)
    value = serializers.CharField(max_length=255, allow_blank=True, allow_null=True)


class AppliesToIn(serializers.Serializer):
    fee_types = serializers.ListField(child=serializers.CharField(max_length=32), required=False, allow_null=True)
    billable_metric_codes = serializers.ListField(child=serializers.CharField(max_length=255), required=False,
                                                  allow_null=True)


def _rules():
    # Checked by the service as Lago does, rule by rule, into one code on `recurring_transaction_rules`.
    return serializers.ListField(child=serializers.DictField(), required=False, allow_null=True)


class WalletIn(serializers.Serializer):
    external_customer_id = serializers.CharField(max_length=255)
    currency = serializers.ChoiceField(choices=SUPPORTED_CURRENCIES)
    rate_amount = _Decimal(max_digits=30, decimal_places=12)
    name = BlankableCharField(max_length=255)
    code = BlankableCharField(max_length=255)
    priority = serializers.IntegerField(min_value=1, max_value=50, required=False, allow_null=True)
    paid_credits = _credits()
    granted_credits = _credits()
    expiration_at = serializers.DateTimeField(required=False, allow_null=True)
    invoice_requires_successful_payment = serializers.BooleanField(required=False, allow_null=True)
    recurring_transaction_rules = _rules()
    applies_to = AppliesToIn(required=False, allow_null=True)
    metadata = serializers.DictField(required=False, allow_null=True)  # checked by the service (Lago's object)


class WalletUpdateIn(serializers.Serializer):
    name = BlankableCharField(max_length=255)
    code = BlankableCharField(max_length=255)
    priority = serializers.IntegerField(min_value=1, max_value=50, required=False, allow_null=True)
    expiration_at = serializers.DateTimeField(required=False, allow_null=True)
    # lago-python-client sends every field of its model, null when unset: null leaves this one as it is.
    invoice_requires_successful_payment = serializers.BooleanField(required=False, allow_null=True)
    recurring_transaction_rules = _rules()
    applies_to = AppliesToIn(required=False, allow_null=True)
    metadata = serializers.DictField(required=False, allow_null=True)  # checked by the service (Lago's object)

    def validate(self, attrs):
        if attrs.get("invoice_requires_successful_payment", False) is None:
            attrs.pop("invoice_requires_successful_payment")
        return attrs


class WalletTransactionIn(serializers.Serializer):
    wallet_id = serializers.UUIDField()
    paid_credits = _credits()
    granted_credits = _credits()
    name = BlankableCharField(max_length=255)
    metadata = MetadataIn(many=True, required=False, allow_null=True)


class WalletMetadataIn(serializers.Serializer):
    metadata = serializers.DictField(allow_null=True)  # checked by the service (Lago's object)
