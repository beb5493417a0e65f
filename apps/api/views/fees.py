"""Fees (Lago's GET /fees, /fees/{lago_id}): the lines a service billed, across its invoices."""
from __future__ import annotations

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.exceptions import NotAllowed, ValidationFailed
from apps.invoicing.models import Fee, Invoice
from apps.invoicing.representations import fee_out, fees_out
from apps.invoicing.selectors import fee_get, fee_list

from ..openapi import lago_operation, query, ref
from ..pagination import paginate
from ..params import currency_param, datetime_param
from ..serializers.common import root_payload

PAYMENT_STATUSES = [*Invoice.PaymentStatus.values, "refunded"]


def _one_of(request, name: str, allowed: list[str]) -> str | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if value not in allowed:
        raise ValidationFailed(f"bad {name}", details={name: ["value_is_invalid"]})
    return value


class FeeListView(APIView):
    @lago_operation("findAllFees", response="Fee", plural="fees", parameters=[
        query("external_customer_id"), query("external_subscription_id"),
        query("fee_type", enum=Fee.FeeType.values), query("billable_metric_code"),
        query("payment_status", enum=PAYMENT_STATUSES, description="The payment status of the fee's invoice."),
        query("currency", description="ISO 4217 code the hub bills in."),
        query("created_at_from", str, "ISO 8601 date-time."), query("created_at_to", str, "ISO 8601 date-time."),
    ], description="The fees the service billed, newest first; a shared invoice's lines of other services are not listed.")
    def get(self, request):
        service = request.auth.service
        fee_type = _one_of(request, "fee_type", Fee.FeeType.values)
        fees = fee_list(
            service=service,
            external_customer_id=request.query_params.get("external_customer_id") or None,
            external_subscription_id=request.query_params.get("external_subscription_id") or None,
            fee_types=[fee_type] if fee_type else None,
            billable_metric_code=request.query_params.get("billable_metric_code") or None,
            payment_status=_one_of(request, "payment_status", PAYMENT_STATUSES),
            currency=(currency_param(request, "currency") or [None])[0],
            created_at_from=datetime_param(request, "created_at_from"),
            created_at_to=datetime_param(request, "created_at_to"),
        )
        return Response(paginate(request, fees, "fees", lambda items: fees_out(items, viewer=service)))


INVOICED = ("Every hub fee is on an invoice (pay-in-advance charges are billed with the period), and Lago lets "
            "only a fee not yet invoiced change: 405 `invoiced_fee`.")


class FeeDetailView(APIView):
    @lago_operation("findFee", response="Fee", root="fee")
    def get(self, request, lago_id: str):
        fee = fee_get(service=request.auth.service, lago_id=lago_id)
        return Response({"fee": fee_out(fee, viewer=request.auth.service)})

    @lago_operation("updateFee", request=ref("FeeUpdateBody"), response="Fee", root="fee",
                    description="A fee's payment status, as Lago (`fees/update_service.rb`): an invoiced fee's status is "
                                "its invoice's. " + INVOICED)
    def put(self, request, lago_id: str):
        data = root_payload(request, "fee")
        fee = fee_get(service=request.auth.service, lago_id=lago_id)
        if "payment_status" in data:
            raise NotAllowed("the fee is invoiced: its payment status is its invoice's", code="invoiced_fee")
        return Response({"fee": fee_out(fee, viewer=request.auth.service)})

    @lago_operation("deleteFee", response="Fee", root="fee", description=INVOICED)
    def delete(self, request, lago_id: str):
        fee_get(service=request.auth.service, lago_id=lago_id)  # 404 first, as Lago
        raise NotAllowed("an invoiced fee cannot be deleted", code="invoiced_fee")


urlpatterns = [
    path("fees", FeeListView.as_view()),
    path("fees/<str:lago_id>", FeeDetailView.as_view()),
]
