from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import OpenApiParameter
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.exceptions import ValidationFailed
from apps.customers.representations import customer_out
from apps.customers.selectors import account_link_get, account_link_list
from apps.customers.services import customer_upsert
from apps.invoicing.representations import past_usage_out
from apps.invoicing.selectors import past_usage_fees, past_usage_periods
from apps.subscriptions.services import customer_link_delete

from ..openapi import lago_operation, query
from ..pagination import paginate
from ..params import currency_param, int_param
from ..serializers.common import root_payload
from ..serializers.customers import CustomerIn
from .invoices import INVOICE_FILTERS, credit_notes_page, invoices_page
from .subscriptions import SUBSCRIPTION_FILTERS, subscriptions_page


class CustomerListCreateView(APIView):
    @lago_operation("createCustomer", request=CustomerIn, root="customer", response="Customer",
                    summary="Create or update a customer by external_id")
    def post(self, request):
        serializer = CustomerIn(data=root_payload(request, "customer"))
        serializer.is_valid(raise_exception=True)
        link = customer_upsert(
            service=request.auth.service,
            external_id=serializer.validated_data["external_id"],
            attributes=serializer.customer_attributes(),
        )
        return Response({"customer": customer_out(link)})

    @lago_operation("findAllCustomers", response="Customer", plural="customers", parameters=[
        query("search_term", description="Part of the external_id or name."),
        query("countries", many=True), query("states", many=True),
        query("currencies", many=True, description="ISO 4217 codes the hub bills in."),
    ])
    def get(self, request):
        links = account_link_list(service=request.auth.service)
        search = request.query_params.get("search_term")
        if search:
            links = links.filter(external_id__icontains=search) | links.filter(customer__name__icontains=search)
        countries = request.query_params.getlist("countries[]")
        if countries:
            links = links.filter(customer__country__in=countries)
        states = request.query_params.getlist("states[]")
        if states:
            links = links.filter(customer__state__in=states)
        currencies = currency_param(request, "currencies")
        if currencies:
            links = links.filter(customer__currency__in=currencies)
        return Response(paginate(request, links, "customers", lambda items: [customer_out(i) for i in items]))


class CustomerDetailView(APIView):
    @lago_operation("findCustomer", response="Customer", root="customer")
    def get(self, request, external_id: str):
        link = account_link_get(service=request.auth.service, external_id=external_id)
        return Response({"customer": customer_out(link)})

    @lago_operation("destroyCustomer", response="Customer", root="customer")
    def delete(self, request, external_id: str):
        link = account_link_get(service=request.auth.service, external_id=external_id)
        link = customer_link_delete(link_id=link.pk)
        return Response({"customer": customer_out(link)})


class CustomerInvoiceListView(APIView):
    @lago_operation("findAllCustomerInvoices", response="Invoice", plural="invoices", parameters=INVOICE_FILTERS)
    def get(self, request, external_id: str):
        account_link_get(service=request.auth.service, external_id=external_id)  # 404 customer_not_found
        return Response(invoices_page(request, external_id))


class CustomerCreditNoteListView(APIView):
    @lago_operation("findAllCustomerCreditNotes", response="CreditNote", plural="credit_notes")
    def get(self, request, external_id: str):
        account_link_get(service=request.auth.service, external_id=external_id)
        return Response(credit_notes_page(request, external_id))


class CustomerSubscriptionListView(APIView):
    @lago_operation("findAllCustomerSubscriptions", response="Subscription", plural="subscriptions",
                    parameters=SUBSCRIPTION_FILTERS)
    def get(self, request, external_id: str):
        account_link_get(service=request.auth.service, external_id=external_id)
        return Response(subscriptions_page(request, external_id))


class CustomerPastUsageView(APIView):
    @lago_operation("findAllCustomerPastUsage", response="CustomerUsage", plural="usage_periods", parameters=[
        OpenApiParameter("external_subscription_id", str, required=True), query("billable_metric_code"),
        query("periods_count", int, "Only the latest so many billed periods."),
    ], description="The usage of a subscription's billed periods, newest first, as its invoices billed it.")
    def get(self, request, external_id: str):
        service = request.auth.service
        link = account_link_get(service=service, external_id=external_id)
        external_subscription_id = request.query_params.get("external_subscription_id")
        if not external_subscription_id:
            raise ValidationFailed("missing", details={"external_subscription_id": ["value_is_mandatory"]})
        periods = past_usage_periods(service=service, account_link=link,
                                     external_subscription_id=external_subscription_id,
                                     periods_count=int_param(request, "periods_count", minimum=1))
        code = request.query_params.get("billable_metric_code") or None

        def render(items):
            fees = past_usage_fees(items, billable_metric_code=code)
            return [past_usage_out(period, fees.get((period.invoice_id, period.subscription_id), [])) for period in items]

        return Response(paginate(request, periods, "usage_periods", render))


urlpatterns = [
    path("customers/<str:external_id>/past_usage", CustomerPastUsageView.as_view()),
    path("customers/<str:external_id>/invoices", CustomerInvoiceListView.as_view()),
    path("customers/<str:external_id>/credit_notes", CustomerCreditNoteListView.as_view()),
    path("customers/<str:external_id>/subscriptions", CustomerSubscriptionListView.as_view()),
]
