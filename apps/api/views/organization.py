"""The organization and its one billing entity (Lago's PUT /organizations, /billing_entities).

The hub bills as one company, Nexa Systems Inc. (Ontario): Lago's organization and its default billing entity are
the same row (customers.Organization). A second entity is refused with Lago's 403 `feature_unavailable` (Lago's
answer where multiple entities are not available). What invoices say about the seller can be changed, by staff or
by the services ORGANIZATION_API_SERVICES names; the billing rules Lago keeps there are the hub's settings and are
refused with 422 unless sent unchanged (services.organization_update).
"""
from __future__ import annotations

from django.urls import path
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.exceptions import Forbidden, NotFound, ValidationFailed
from apps.customers.representations import billing_entity_out, organization_out
from apps.customers.selectors import organization_get, organization_settings
from apps.customers.services import organization_update
from apps.webhooks.selectors import webhook_endpoint_list

from ..openapi import lago_operation
from ..serializers.common import BlankableCharField, StrictIntegerField, root_payload


class SellerBillingConfigurationIn(serializers.Serializer):
    invoice_footer = BlankableCharField(max_length=10_000)
    invoice_grace_period = StrictIntegerField(required=False, min_value=0, max_value=365)
    document_locale = serializers.CharField(required=False, max_length=8)
    subscription_invoice_issuing_date_anchor = serializers.ChoiceField(
        required=False, choices=["current_period_end", "next_period_start"])
    subscription_invoice_issuing_date_adjustment = serializers.ChoiceField(
        required=False, choices=["align_with_finalization_date", "keep_anchor"])


class _SellerIn(serializers.Serializer):
    legal_name = BlankableCharField(max_length=255)
    legal_number = BlankableCharField(max_length=255)
    tax_identification_number = BlankableCharField(max_length=255)
    email = BlankableCharField(max_length=255)
    address_line1 = BlankableCharField(max_length=255)
    address_line2 = BlankableCharField(max_length=255)
    city = BlankableCharField(max_length=255)
    state = BlankableCharField(max_length=64)
    zipcode = BlankableCharField(max_length=32)
    country = BlankableCharField(max_length=2, min_length=2)
    default_currency = serializers.CharField(required=False, max_length=3)
    timezone = serializers.CharField(required=False, max_length=64)
    document_number_prefix = serializers.CharField(required=False, allow_null=True, max_length=32)
    net_payment_term = StrictIntegerField(required=False, min_value=0)
    finalize_zero_amount_invoice = serializers.BooleanField(required=False)
    email_settings = serializers.ListField(child=serializers.CharField(), required=False)
    billing_configuration = SellerBillingConfigurationIn(required=False)

    def validate_country(self, value: str) -> str:
        return value.upper()


class OrganizationIn(_SellerIn):
    webhook_url = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    document_numbering = serializers.ChoiceField(required=False, choices=["per_customer", "per_organization"])


class BillingEntityIn(_SellerIn):
    code = serializers.CharField(required=False, max_length=255)
    name = serializers.CharField(required=False, max_length=255)
    document_numbering = serializers.ChoiceField(required=False, choices=["per_customer", "per_billing_entity"])
    eu_tax_management = serializers.BooleanField(required=False)


# Accepted only as the hub has them: its numbering is one series, it e-mails nothing, it keeps no webhook URL here.
_FIXED = {"document_numbering": ("per_organization", "per_billing_entity"), "email_settings": ([],),
          "webhook_url": (None, ""), "eu_tax_management": (False,),
          "subscription_invoice_issuing_date_anchor": ("next_period_start",),
          "subscription_invoice_issuing_date_adjustment": ("align_with_finalization_date",)}


def _values(serializer_class, request, root: str) -> dict:
    serializer = serializer_class(data=root_payload(request, root))
    serializer.is_valid(raise_exception=True)
    values = dict(serializer.validated_data)
    values |= dict(values.pop("billing_configuration", {}))
    values.pop("code", None)  # an entity's code is the hub's (BILLING_ENTITY_CODE), named in the path
    refused = {name: ["value_is_invalid"] for name, allowed in _FIXED.items()
               if name in values and values.pop(name) not in allowed}
    if refused:
        raise ValidationFailed("not how the hub bills", details=refused)
    return values


class OrganizationView(APIView):
    @lago_operation("updateOrganization", request=OrganizationIn, root="organization", response="Organization",
                    partial=True, errors=(403,))
    def put(self, request):
        service = request.auth.service
        organization = organization_update(values=_values(OrganizationIn, request, "organization"), changed_by=service)
        urls = [endpoint.webhook_url for endpoint in webhook_endpoint_list(service=service)]
        return Response({"organization": organization_out(organization, settings_values=organization_settings(),
                                                          webhook_urls=urls)})


def _entity(code: str):
    if code != organization_settings()["code"]:
        raise NotFound("billing_entity")
    return organization_get()


class BillingEntityListView(APIView):
    @lago_operation("listBillingEntities", response="BillingEntity", root="billing_entities", many=True)
    def get(self, request):
        body = billing_entity_out(organization_get(), settings_values=organization_settings())
        return Response({"billing_entities": [body]})

    @lago_operation("createBillingEntity", request=BillingEntityIn, root="billing_entity", response="BillingEntity",
                    errors=(403,))
    def post(self, request):
        root_payload(request, "billing_entity")  # Lago's 400 first, as its `params.require`
        raise Forbidden("the hub bills as one entity", code="feature_unavailable")


class BillingEntityDetailView(APIView):
    @lago_operation("getBillingEntity", response="BillingEntity", root="billing_entity")
    def get(self, request, code: str):
        body = billing_entity_out(_entity(code), settings_values=organization_settings(), detail=True)
        return Response({"billing_entity": body})

    @lago_operation("updateBillingEntity", request=BillingEntityIn, root="billing_entity", response="BillingEntity",
                    partial=True, errors=(403,))
    def put(self, request, code: str):
        _entity(code)
        organization = organization_update(values=_values(BillingEntityIn, request, "billing_entity"),
                                           changed_by=request.auth.service)
        body = billing_entity_out(organization, settings_values=organization_settings(), detail=True)
        return Response({"billing_entity": body})


urlpatterns = [
    path("organizations", OrganizationView.as_view()),
    path("billing_entities", BillingEntityListView.as_view()),
    path("billing_entities/<str:code>", BillingEntityDetailView.as_view()),
]
