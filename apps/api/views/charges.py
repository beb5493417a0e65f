"""A plan's charges and their filters, one at a time (Lago's /plans/{code}/charges and
/plans/{code}/charges/{charge_code}/filters).

Writes go through the catalog's plan_update, so a charge written here passes the checks POST /plans gives its
charges; answers are the plan body's charge object and Lago's ChargeFilterFullObject. A charge or filter is found
by the plan's code and its own code (filter: id) among the calling service's live plans: another service's plan is
Lago's 404 `plan_not_found`. Lago's `cascade_updates` (write into the plan's overridden children) is accepted and
ignored: a subscription's overrides stay as they were made.
"""
from __future__ import annotations

from django.urls import path
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.catalog.representations import charge_filter_full_out, charge_out
from apps.catalog.selectors import (
    charge_filter_get,
    charge_filter_list,
    plan_charge_get,
    plan_charge_list,
    plan_get,
)
from apps.catalog.services import (
    NO_FILTERS,
    charge_filter_delete,
    charge_filter_write,
    charge_input,
    plan_charge_delete,
    plan_charge_write,
)

from ..openapi import lago_operation
from ..pagination import paginate
from ..serializers.catalog import ChargeFilterIn, ChargeIn, properties_errors
from ..serializers.common import root_payload


def _charge_values(body: dict, base: dict | None = None) -> dict:
    """A ChargeIn's values for `body` laid over `base` (the charge as it is, for PUT); a body without `filters`
    leaves the charge's filters as they are."""
    serializer = ChargeIn(data={**(base or {}), **body})
    serializer.is_valid(raise_exception=True)
    values = dict(serializer.validated_data)
    if "filters" not in body:
        values["filters"] = NO_FILTERS
    return values


def _charge(service, code: str, charge_code: str):
    return plan_charge_get(plan=plan_get(service=service, code=code), code=charge_code)


class PlanChargeListView(APIView):
    @lago_operation("findAllPlanCharges", response="PlanCharge", plural="charges")
    def get(self, request, code: str):
        charges = plan_charge_list(plan=plan_get(service=request.auth.service, code=code))
        return Response(paginate(request, charges, "charges", lambda items: [charge_out(c) for c in items]))

    @lago_operation("createPlanCharge", request=ChargeIn, root="charge", response="PlanCharge")
    def post(self, request, code: str):
        plan = plan_get(service=request.auth.service, code=code)
        charge = plan_charge_write(plan=plan, data=_charge_values(root_payload(request, "charge")))
        return Response({"charge": charge_out(plan_charge_get(plan=plan, code=charge.code))})


class PlanChargeDetailView(APIView):
    @lago_operation("findPlanCharge", response="PlanCharge", root="charge")
    def get(self, request, code: str, charge_code: str):
        return Response({"charge": charge_out(_charge(request.auth.service, code, charge_code))})

    @lago_operation("updatePlanCharge", request=ChargeIn, root="charge", partial=True, response="PlanCharge")
    def put(self, request, code: str, charge_code: str):
        plan = plan_get(service=request.auth.service, code=code)
        charge = plan_charge_get(plan=plan, code=charge_code)
        body = {key: value for key, value in root_payload(request, "charge").items() if key != "code"}
        plan_charge_write(plan=plan, data=_charge_values(body, charge_input(charge)), code=charge_code)
        return Response({"charge": charge_out(plan_charge_get(plan=plan, code=charge_code))})

    @lago_operation("destroyPlanCharge", response="PlanCharge", root="charge")
    def delete(self, request, code: str, charge_code: str):
        plan = plan_get(service=request.auth.service, code=code)
        body = charge_out(plan_charge_get(plan=plan, code=charge_code))
        plan_charge_delete(plan=plan, code=charge_code)
        return Response({"charge": body})


def _filter_values(charge, body: dict, *, partial: bool) -> dict:
    """A ChargeFilterIn's values; its properties checked as its charge's (Lago prices a filter with its charge's
    model)."""
    serializer = ChargeFilterIn(data=body, partial=partial)
    serializer.is_valid(raise_exception=True)
    values = {key: value for key, value in serializer.validated_data.items() if key in body}
    if "properties" in values and (errors := properties_errors(charge.charge_model, values["properties"])):
        raise serializers.ValidationError({"properties": errors})
    return values


class PlanChargeFilterListView(APIView):
    @lago_operation("findAllPlanChargeFilters", response="ChargeFilterFull", plural="filters")
    def get(self, request, code: str, charge_code: str):
        filters = charge_filter_list(charge=_charge(request.auth.service, code, charge_code))
        return Response(paginate(request, filters, "filters", lambda items: [charge_filter_full_out(f) for f in items]))

    @lago_operation("createPlanChargeFilter", request=ChargeFilterIn, root="filter", response="ChargeFilterFull")
    def post(self, request, code: str, charge_code: str):
        charge = _charge(request.auth.service, code, charge_code)
        item = charge_filter_write(charge=charge, data=_filter_values(charge, root_payload(request, "filter"),
                                                                      partial=False))
        return Response({"filter": charge_filter_full_out(item)})


class PlanChargeFilterDetailView(APIView):
    @lago_operation("findPlanChargeFilter", response="ChargeFilterFull", root="filter")
    def get(self, request, code: str, charge_code: str, filter_id: str):
        charge = _charge(request.auth.service, code, charge_code)
        return Response({"filter": charge_filter_full_out(charge_filter_get(charge=charge, lago_id=filter_id))})

    @lago_operation("updatePlanChargeFilter", request=ChargeFilterIn, root="filter", partial=True,
                    response="ChargeFilterFull")
    def put(self, request, code: str, charge_code: str, filter_id: str):
        charge = _charge(request.auth.service, code, charge_code)
        found = charge_filter_get(charge=charge, lago_id=filter_id)
        values = _filter_values(charge, root_payload(request, "filter"), partial=True)
        return Response({"filter": charge_filter_full_out(charge_filter_write(charge=charge, data=values,
                                                                              charge_filter=found))})

    @lago_operation("destroyPlanChargeFilter", response="ChargeFilterFull", root="filter")
    def delete(self, request, code: str, charge_code: str, filter_id: str):
        charge = _charge(request.auth.service, code, charge_code)
        found = charge_filter_delete(charge_filter=charge_filter_get(charge=charge, lago_id=filter_id))
        return Response({"filter": charge_filter_full_out(found)})


urlpatterns = [
    path("plans/<str:code>/charges", PlanChargeListView.as_view()),
    path("plans/<str:code>/charges/<str:charge_code>", PlanChargeDetailView.as_view()),
    path("plans/<str:code>/charges/<str:charge_code>/filters", PlanChargeFilterListView.as_view()),
    path("plans/<str:code>/charges/<str:charge_code>/filters/<str:filter_id>", PlanChargeFilterDetailView.as_view()),
]
