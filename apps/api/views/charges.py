"""A plan's charges and their filters, one at a time (Lago's /plans/{code}/charges and
/plans/{code}/charges/{charge_code}/filters), and a subscription's (/subscriptions/{external_id}/charges…).

Writes go through the catalog's plan_update, so a charge written here passes the checks POST /plans gives its
charges; answers are the plan body's charge object and Lago's ChargeFilterFullObject. A charge or filter is found
by the plan's code and its own code (filter: id) among the calling service's live plans: another service's plan is
Lago's 404 `plan_not_found`. Lago's `cascade_updates` (write into the plan's overridden children) is accepted and
ignored: a subscription's overrides stay as they were made.

A subscription's charges are its plan's: its own plan's (a child) once it has overrides. Writing one (PUT a charge,
any filter write) first moves a subscription without its own plan onto a copy of the catalog plan, as PUT
/subscriptions with `plan_overrides` does, so the catalog plan never changes; the copy's filters also answer to
the catalog filters' ids.
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
    own_charge_filter_get,
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

from apps.subscriptions.overrides import (
    subscription_charge_filter_delete,
    subscription_charge_filter_write,
    subscription_plan_override,
)
from apps.subscriptions.selectors import subscription_get

from ..openapi import lago_operation
from ..pagination import paginate
from ..serializers.catalog import ChargeFilterIn, ChargeIn, properties_errors, properties_group_keys_normalized
from ..serializers.common import BlankableCharField, StrictIntegerField, root_payload
from .subscriptions import STATUS, _status_param


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
        # Newest first, as Lago lists them.
        plan = plan_get(service=request.auth.service, code=code)
        charges = plan_charge_list(plan=plan).order_by("-created_at", "-id")
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
    # A change names properties and name only: Lago's update ignores `values`.
    values = {key: value for key, value in serializer.validated_data.items()
              if key in body and not (partial and key == "values")}
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


# --------------------------------------------------------------------------- a subscription's charges


class SubscriptionChargeOverrideIn(serializers.Serializer):
    """Lago's ChargeOverridableInput: what a subscription may change of its plan's charge."""

    invoice_display_name = BlankableCharField(max_length=255)
    min_amount_cents = StrictIntegerField(min_value=0, required=False)
    properties = serializers.DictField(required=False)
    filters = ChargeFilterIn(many=True, required=False)
    # Tax is decided by the customer's province (Canadian rules); accepted for Lago compatibility.
    tax_codes = serializers.ListField(child=serializers.CharField(), required=False)

    def validate_properties(self, value):
        return properties_group_keys_normalized(value)


def _subscription(request, external_id: str):
    return subscription_get(service=request.auth.service, external_id=external_id, status=_status_param(request))


def _override_values(charge, body: dict) -> dict:
    """The override's values, their properties and its filters' checked as the charge's model prices them."""
    serializer = SubscriptionChargeOverrideIn(data=body)
    serializer.is_valid(raise_exception=True)
    values = {key: value for key, value in serializer.validated_data.items() if key in body and key != "tax_codes"}
    errors = properties_errors(charge.charge_model, values["properties"]) if "properties" in values else {}
    if "filters" in values:
        values["filters"] = [dict(item) for item in values["filters"]]
        filter_errors = {index: {"properties": found} for index, item in enumerate(values["filters"])
                         if (found := properties_errors(charge.charge_model, item.get("properties")))}
        if filter_errors:
            errors["filters"] = filter_errors
    if errors:
        raise serializers.ValidationError(errors)
    return values


def _subscription_charge(request, external_id: str, charge_code: str):
    """(the subscription, its plan's charge named `charge_code`)."""
    subscription = _subscription(request, external_id)
    return subscription, plan_charge_get(plan=subscription.plan, code=charge_code)


class SubscriptionChargeListView(APIView):
    @lago_operation("findAllSubscriptionCharges", response="PlanCharge", plural="charges", parameters=[STATUS])
    def get(self, request, external_id: str):
        charges = plan_charge_list(plan=_subscription(request, external_id).plan).order_by("-created_at", "-id")
        return Response(paginate(request, charges, "charges", lambda items: [charge_out(c) for c in items]))


class SubscriptionChargeDetailView(APIView):
    @lago_operation("findSubscriptionCharge", response="PlanCharge", root="charge", parameters=[STATUS])
    def get(self, request, external_id: str, charge_code: str):
        plan = _subscription(request, external_id).plan
        return Response({"charge": charge_out(plan_charge_get(plan=plan, code=charge_code))})

    @lago_operation("overrideSubscriptionCharge", request=SubscriptionChargeOverrideIn, root="charge",
                    partial=True, response="PlanCharge", parameters=[STATUS])
    def put(self, request, external_id: str, charge_code: str):
        subscription = _subscription(request, external_id)
        charge = plan_charge_get(plan=subscription.plan, code=charge_code)
        values = _override_values(charge, root_payload(request, "charge"))
        subscription = subscription_plan_override(
            subscription=subscription, overrides={"charges": [{"id": str(charge.lago_id), **values}]})
        return Response({"charge": charge_out(plan_charge_get(plan=subscription.plan, code=charge_code))})


class SubscriptionChargeFilterListView(APIView):
    @lago_operation("findAllSubscriptionChargeFilters", response="ChargeFilterFull", plural="filters",
                    parameters=[STATUS])
    def get(self, request, external_id: str, charge_code: str):
        _, charge = _subscription_charge(request, external_id, charge_code)
        filters = charge_filter_list(charge=charge)
        return Response(paginate(request, filters, "filters", lambda items: [charge_filter_full_out(f) for f in items]))

    @lago_operation("createSubscriptionChargeFilter", request=ChargeFilterIn, root="filter",
                    response="ChargeFilterFull", parameters=[STATUS])
    def post(self, request, external_id: str, charge_code: str):
        subscription, charge = _subscription_charge(request, external_id, charge_code)
        values = _filter_values(charge, root_payload(request, "filter"), partial=False)
        item = subscription_charge_filter_write(subscription=subscription, charge_code=charge_code, data=values)
        return Response({"filter": charge_filter_full_out(item)})


class SubscriptionChargeFilterDetailView(APIView):
    @lago_operation("findSubscriptionChargeFilter", response="ChargeFilterFull", root="filter", parameters=[STATUS])
    def get(self, request, external_id: str, charge_code: str, filter_id: str):
        _, charge = _subscription_charge(request, external_id, charge_code)
        return Response({"filter": charge_filter_full_out(own_charge_filter_get(charge=charge, lago_id=filter_id))})

    @lago_operation("updateSubscriptionChargeFilter", request=ChargeFilterIn, root="filter", partial=True,
                    response="ChargeFilterFull", parameters=[STATUS])
    def put(self, request, external_id: str, charge_code: str, filter_id: str):
        subscription, charge = _subscription_charge(request, external_id, charge_code)
        own_charge_filter_get(charge=charge, lago_id=filter_id)  # 404 before any copy
        values = _filter_values(charge, root_payload(request, "filter"), partial=True)
        item = subscription_charge_filter_write(subscription=subscription, charge_code=charge_code, data=values,
                                                filter_id=filter_id)
        return Response({"filter": charge_filter_full_out(item)})

    @lago_operation("destroySubscriptionChargeFilter", response="ChargeFilterFull", root="filter",
                    parameters=[STATUS])
    def delete(self, request, external_id: str, charge_code: str, filter_id: str):
        subscription, charge = _subscription_charge(request, external_id, charge_code)
        own_charge_filter_get(charge=charge, lago_id=filter_id)  # 404 before any copy
        item = subscription_charge_filter_delete(subscription=subscription, charge_code=charge_code,
                                                 filter_id=filter_id)
        return Response({"filter": charge_filter_full_out(item)})


urlpatterns = [
    path("plans/<str:code>/charges", PlanChargeListView.as_view()),
    path("plans/<str:code>/charges/<str:charge_code>", PlanChargeDetailView.as_view()),
    path("plans/<str:code>/charges/<str:charge_code>/filters", PlanChargeFilterListView.as_view()),
    path("plans/<str:code>/charges/<str:charge_code>/filters/<str:filter_id>", PlanChargeFilterDetailView.as_view()),
    path("subscriptions/<str:external_id>/charges", SubscriptionChargeListView.as_view()),
    path("subscriptions/<str:external_id>/charges/<str:charge_code>", SubscriptionChargeDetailView.as_view()),
    path("subscriptions/<str:external_id>/charges/<str:charge_code>/filters",
         SubscriptionChargeFilterListView.as_view()),
    path("subscriptions/<str:external_id>/charges/<str:charge_code>/filters/<str:filter_id>",
         SubscriptionChargeFilterDetailView.as_view()),
]
