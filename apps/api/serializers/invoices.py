"""Lago-shaped input for invoices and credit notes. The bodies the API answers with are
apps/invoicing/representations.py (shared with the webhooks)."""
from __future__ import annotations

from rest_framework import serializers

from apps.invoicing.models import CreditNote

from .common import BlankableCharField, StrictIntegerField


class AddOnFeeIn(serializers.Serializer):
    add_on_code = serializers.CharField(max_length=255)
    units = serializers.DecimalField(max_digits=30, decimal_places=12, required=False, default=None, allow_null=True)
    # Absent or null: the add-on's amount_cents (Lago).
    unit_amount_cents = StrictIntegerField(min_value=0, required=False, allow_null=True, default=None)
    description = serializers.CharField(required=False, allow_blank=True, allow_null=True, default=None)
    invoice_display_name = BlankableCharField(max_length=255)  # the fee's name column
    # Tax is decided by the customer's province (Canadian rules); accepted for Lago compatibility.
    tax_codes = serializers.ListField(child=serializers.CharField(), required=False)


class OneOffInvoiceIn(serializers.Serializer):
    external_customer_id = serializers.CharField(max_length=255)
    currency = serializers.CharField(max_length=3, required=False, allow_null=True, default=None)
    fees = AddOnFeeIn(many=True, allow_empty=False)


class CreditNoteItemSerializer(serializers.Serializer):
    fee_id = serializers.UUIDField()
    amount_cents = StrictIntegerField(min_value=1)


class CreditNoteIn(serializers.Serializer):
    invoice_id = serializers.UUIDField()
    reason = serializers.ChoiceField(choices=CreditNote.Reason.values, required=False, default=CreditNote.Reason.OTHER)
    description = BlankableCharField()
    credit_amount_cents = StrictIntegerField(min_value=0, required=False, allow_null=True, default=None)
    refund_amount_cents = StrictIntegerField(min_value=0, required=False, allow_null=True, default=None)
    offset_amount_cents = StrictIntegerField(min_value=0, required=False, allow_null=True, default=None)
    items = CreditNoteItemSerializer(many=True, allow_empty=False)


class InvoiceVoidIn(serializers.Serializer):
    """Lago's InvoiceVoidInput, at the body's top level (lago-python-client's `void_invoice(id, options)`)."""

    generate_credit_note = serializers.BooleanField(required=False, allow_null=True, default=False)
    credit_amount = StrictIntegerField(min_value=0, required=False, allow_null=True, default=None)  # minor units
    refund_amount = StrictIntegerField(min_value=0, required=False, allow_null=True, default=None)  # minor units


# An invoice's payment status and a credit note's refund status: one choice set, one OpenAPI enum
# (SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]).
SETTLEMENT_STATUSES = ["pending", "succeeded", "failed"]


class InvoiceMetadataIn(serializers.Serializer):
    id = serializers.UUIDField(required=False, allow_null=True, default=None)  # an existing entry's lago_id
    key = serializers.CharField(max_length=255)
    value = serializers.CharField(max_length=140, allow_blank=True)  # Lago: 140 characters at most


class InvoiceUpdateIn(serializers.Serializer):
    # lago-python-client sends null for what it does not set: null reads as absent.
    metadata = InvoiceMetadataIn(many=True, required=False, allow_null=True)
    payment_status = serializers.ChoiceField(choices=SETTLEMENT_STATUSES, required=False, allow_null=True)


class CreditNoteUpdateIn(serializers.Serializer):
    refund_status = serializers.ChoiceField(choices=SETTLEMENT_STATUSES, required=False, allow_null=True)
    metadata = serializers.DictField(child=serializers.CharField(max_length=255, allow_null=True, allow_blank=True),
                                     required=False, allow_null=True)

    def validate_metadata(self, value):
        if value is not None and (len(value) > 50 or any(not key or len(key) > 100 for key in value)):
            raise serializers.ValidationError("value_is_out_of_range", code="value_is_out_of_range")
        return value


class PreviewCustomerIn(serializers.Serializer):
    # The customer's other fields (address, currency, timezone) are accepted and not applied: the hub previews
    # an existing customer, taxed by the province it has.
    external_id = serializers.CharField(max_length=255, required=False, allow_null=True, default=None)


class PreviewSubscriptionsIn(serializers.Serializer):
    external_ids = serializers.ListField(child=serializers.CharField(max_length=255), allow_empty=True)
    plan_code = serializers.CharField(max_length=255, required=False, allow_null=True, default=None)
    terminated_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class PreviewCouponIn(serializers.Serializer):
    code = serializers.CharField(max_length=255)
    name = BlankableCharField(max_length=255)
    coupon_type = serializers.ChoiceField(choices=["fixed_amount", "percentage"], required=False, allow_null=True,
                                          default=None)
    amount_cents = StrictIntegerField(min_value=0, required=False, allow_null=True, default=None)
    amount_currency = serializers.CharField(max_length=3, required=False, allow_null=True, default=None)
    percentage_rate = serializers.DecimalField(max_digits=10, decimal_places=5, min_value=0, max_value=100,
                                               required=False, allow_null=True, default=None)
    frequency = serializers.ChoiceField(choices=["once", "recurring", "forever"], required=False, allow_null=True,
                                        default=None)
    frequency_duration = StrictIntegerField(min_value=1, max_value=2**31 - 1, required=False, allow_null=True,
                                            default=None)


class InvoicePreviewIn(serializers.Serializer):
    """Lago's preview body (top level, no root key); lago-python-client sends null for what it does not set."""

    customer = PreviewCustomerIn()
    plan_code = serializers.CharField(max_length=255, required=False, allow_null=True, default=None)
    billing_time = serializers.ChoiceField(choices=["calendar", "anniversary"], required=False, allow_null=True)
    subscription_at = serializers.DateTimeField(required=False, allow_null=True)
    coupons = PreviewCouponIn(many=True, required=False, allow_null=True, default=None)
    subscriptions = PreviewSubscriptionsIn(required=False, allow_null=True, default=None)
    billing_entity_code = serializers.CharField(max_length=255, required=False, allow_null=True, default=None)
