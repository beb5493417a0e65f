from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import APIView

from apps.customers.representations import customer_out
from apps.customers.selectors import account_link_get, account_link_list
from apps.customers.services import customer_upsert
from apps.subscriptions.services import customer_link_delete

from ..openapi import lago_operation, query
from ..pagination import paginate
from ..params import currency_param
from ..serializers.common import root_payload
from ..serializers.customers import CustomerIn


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
