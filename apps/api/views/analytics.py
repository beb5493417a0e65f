"""Analytics (Lago's GET /analytics/*): revenue, MRR, collection, overdue balance and usage of the calling service.

The figures come from apps/invoicing/analytics.py, one query each. Lago upper-cases `currency` and filters with it
without validating it (an unknown code finds nothing); `months` is read strictly like every integer parameter.
"""
from __future__ import annotations

from datetime import date

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.exceptions import ValidationFailed
from apps.invoicing import analytics

from ..openapi import lago_operation, query
from ..params import bool_param, int_param

MONTHS = query("months", int, "Only the last so many months, the current one included (1 or less: this month).")
CURRENCY = query("currency", description="ISO 4217 code; only the figures in that currency.")
CUSTOMER = query("external_customer_id", description="Only this customer's invoices (the service's own id).")


def _currency(request) -> str | None:
    return (request.query_params.get("currency") or "").upper() or None


def _months(request) -> int | None:
    return int_param(request, "months")


def _text(request, name: str) -> str | None:
    return request.query_params.get(name) or None


class GrossRevenueView(APIView):
    @lago_operation("findAllGrossRevenues", response="GrossRevenue", root="gross_revenues", many=True,
                    parameters=[CURRENCY, CUSTOMER, MONTHS])
    def get(self, request):
        rows = analytics.gross_revenues(service=request.auth.service, currency=_currency(request),
                                        external_customer_id=_text(request, "external_customer_id"),
                                        months=_months(request))
        return Response({"gross_revenues": rows})


class InvoiceCollectionView(APIView):
    @lago_operation("findAllInvoiceCollections", response="InvoiceCollection", root="invoice_collections",
                    many=True, parameters=[CURRENCY, MONTHS])
    def get(self, request):
        rows = analytics.invoice_collections(service=request.auth.service, currency=_currency(request),
                                             months=_months(request))
        return Response({"invoice_collections": rows})


class InvoicedUsageView(APIView):
    @lago_operation("findAllInvoicedUsages", response="InvoicedUsage", root="invoiced_usages", many=True,
                    parameters=[CURRENCY, MONTHS])
    def get(self, request):
        rows = analytics.invoiced_usages(service=request.auth.service, currency=_currency(request),
                                         months=_months(request))
        return Response({"invoiced_usages": rows})


class MrrView(APIView):
    @lago_operation("findAllMrrs", response="Mrr", root="mrrs", many=True, parameters=[CURRENCY, MONTHS])
    def get(self, request):
        rows = analytics.mrrs(service=request.auth.service, currency=_currency(request), months=_months(request))
        return Response({"mrrs": rows})


class OverdueBalanceView(APIView):
    @lago_operation("findAllOverdueBalances", response="OverdueBalance", root="overdue_balances", many=True,
                    parameters=[CURRENCY, CUSTOMER, MONTHS])
    def get(self, request):
        rows = analytics.overdue_balances(service=request.auth.service, currency=_currency(request),
                                          external_customer_id=_text(request, "external_customer_id"),
                                          months=_months(request))
        return Response({"overdue_balances": rows})


def _date(request, name: str) -> date | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(f"bad {name}", details={name: ["invalid_date"]}) from None


def _choice(request, name: str, allowed) -> str | None:
    value = request.query_params.get(name)
    if value in (None, ""):
        return None
    if value not in allowed:
        raise ValidationFailed(f"bad {name}", details={name: ["value_is_invalid"]})
    return value


class UsageView(APIView):
    @lago_operation("findAllUsages", response="AnalyticsUsage", root="usages", many=True, parameters=[
        query("time_granularity", enum=list(analytics.GRANULARITIES), description="Period length (default daily)."),
        CURRENCY,
        query("from_date", description="ISO 8601 date: periods starting on or after it."),
        query("to_date", description="ISO 8601 date: periods starting on or before it."),
        query("customer_type", enum=["individual", "company"]),
        query("external_customer_id"), query("customer_country", description="ISO 3166-1 alpha-2."),
        query("external_subscription_id"), query("is_billable_metric_recurring", bool),
        query("plan_code"), query("billable_metric_code"),
    ], description="Usage billed to the service's customers per period and metric, dated by the period it prices.")
    def get(self, request):
        recurring = request.query_params.get("is_billable_metric_recurring")
        rows = analytics.usages(
            service=request.auth.service,
            time_granularity=_choice(request, "time_granularity", analytics.GRANULARITIES) or "daily",
            currency=_currency(request),
            from_date=_date(request, "from_date"), to_date=_date(request, "to_date"),
            customer_type=_choice(request, "customer_type", ["individual", "company"]),
            external_customer_id=_text(request, "external_customer_id"),
            customer_country=(_text(request, "customer_country") or "").upper() or None,
            external_subscription_id=_text(request, "external_subscription_id"),
            is_billable_metric_recurring=None if recurring in (None, "") else bool_param(
                request, "is_billable_metric_recurring"),
            plan_code=_text(request, "plan_code"),
            billable_metric_code=_text(request, "billable_metric_code"),
        )
        return Response({"usages": rows})


urlpatterns = [
    path("analytics/gross_revenue", GrossRevenueView.as_view()),
    path("analytics/invoice_collection", InvoiceCollectionView.as_view()),
    path("analytics/invoiced_usage", InvoicedUsageView.as_view()),
    path("analytics/mrr", MrrView.as_view()),
    path("analytics/overdue_balance", OverdueBalanceView.as_view()),
    path("analytics/usage", UsageView.as_view()),
]
