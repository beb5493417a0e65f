from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import APIView

from apps.catalog.plan_terms import plan_create_with_terms, plan_update_with_terms
from apps.catalog.representations import add_on_out, billable_metric_out, plan_out, tax_out
from apps.catalog.selectors import (
    add_on_get,
    add_on_list,
    billable_metric_get,
    billable_metric_list,
    plan_get,
    plan_list,
    tax_get,
    tax_get_for_write,
    tax_list,
)
from apps.catalog.services import (
    add_on_create,
    add_on_delete,
    add_on_update,
    billable_metric_create,
    billable_metric_delete,
    billable_metric_update,
    plan_delete,
    tax_create,
    tax_delete,
    tax_update,
)

from ..openapi import lago_operation
from ..pagination import paginate
from ..serializers.catalog import AddOnIn, BillableMetricIn, PlanIn, TaxIn
from ..serializers.common import root_payload


class BillableMetricListCreateView(APIView):
    @lago_operation("createBillableMetric", request=BillableMetricIn, root="billable_metric", response="BillableMetric")
    def post(self, request):
        serializer = BillableMetricIn(data=root_payload(request, "billable_metric"))
        serializer.is_valid(raise_exception=True)
        metric = billable_metric_create(service=request.auth.service, values=serializer.model_values())
        return Response({"billable_metric": billable_metric_out(metric)})

    @lago_operation("findAllBillableMetrics", response="BillableMetric", plural="billable_metrics")
    def get(self, request):
        metrics = billable_metric_list(service=request.auth.service)
        return Response(paginate(request, metrics, "billable_metrics", lambda items: [billable_metric_out(m) for m in items]))


class BillableMetricDetailView(APIView):
    @lago_operation("findBillableMetric", response="BillableMetric", root="billable_metric")
    def get(self, request, code: str):
        return Response({"billable_metric": billable_metric_out(billable_metric_get(service=request.auth.service, code=code))})

    @lago_operation("updateBillableMetric", request=BillableMetricIn, root="billable_metric", partial=True,
                    response="BillableMetric")
    def put(self, request, code: str):
        metric = billable_metric_get(service=request.auth.service, code=code)
        serializer = BillableMetricIn(data=root_payload(request, "billable_metric"), partial=True)
        serializer.is_valid(raise_exception=True)
        metric = billable_metric_update(metric=metric, values=serializer.model_values())
        return Response({"billable_metric": billable_metric_out(metric)})

    @lago_operation("destroyBillableMetric", response="BillableMetric", root="billable_metric")
    def delete(self, request, code: str):
        metric = billable_metric_get(service=request.auth.service, code=code)
        return Response({"billable_metric": billable_metric_out(billable_metric_delete(metric=metric))})


class PlanListCreateView(APIView):
    @lago_operation("createPlan", request=PlanIn, root="plan", response="Plan")
    def post(self, request):
        serializer = PlanIn(data=root_payload(request, "plan"))
        serializer.is_valid(raise_exception=True)
        values, charges = serializer.model_values()
        plan = plan_create_with_terms(
            service=request.auth.service, values=values, charges=charges or [], terms=serializer.terms()
        )
        return Response({"plan": plan_out(plan_get(service=request.auth.service, code=plan.code))})

    @lago_operation("findAllPlans", response="Plan", plural="plans")
    def get(self, request):
        plans = plan_list(service=request.auth.service)
        return Response(paginate(request, plans, "plans", lambda items: [plan_out(p) for p in items]))


class PlanDetailView(APIView):
    @lago_operation("findPlan", response="Plan", root="plan")
    def get(self, request, code: str):
        return Response({"plan": plan_out(plan_get(service=request.auth.service, code=code))})

    @lago_operation("updatePlan", request=PlanIn, root="plan", partial=True, response="Plan")
    def put(self, request, code: str):
        plan = plan_get(service=request.auth.service, code=code)
        serializer = PlanIn(data=root_payload(request, "plan"), partial=True)
        serializer.is_valid(raise_exception=True)
        values, charges = serializer.model_values()
        plan = plan_update_with_terms(plan=plan, values=values, charges=charges, terms=serializer.terms())
        return Response({"plan": plan_out(plan_get(service=request.auth.service, code=plan.code))})

    @lago_operation("destroyPlan", response="Plan", root="plan")
    def delete(self, request, code: str):
        plan = plan_get(service=request.auth.service, code=code)
        plan = plan_delete(plan=plan)
        return Response({"plan": plan_out(plan)})


class TaxListCreateView(APIView):
    @lago_operation("createTax", request=TaxIn, root="tax", response="Tax")
    def post(self, request):
        serializer = TaxIn(data=root_payload(request, "tax"))
        serializer.is_valid(raise_exception=True)
        tax = tax_create(service=request.auth.service, values=dict(serializer.validated_data))
        return Response({"tax": tax_out(tax)})

    @lago_operation("findAllTaxes", response="Tax", plural="taxes")
    def get(self, request):
        taxes = tax_list(service=request.auth.service)
        return Response(paginate(request, taxes, "taxes", lambda items: [tax_out(t) for t in items]))


class TaxDetailView(APIView):
    @lago_operation("findTax", response="Tax", root="tax")
    def get(self, request, code: str):
        return Response({"tax": tax_out(tax_get(service=request.auth.service, code=code))})

    @lago_operation("updateTax", request=TaxIn, root="tax", partial=True, response="Tax")
    def put(self, request, code: str):
        tax = tax_get_for_write(service=request.auth.service, code=code)
        serializer = TaxIn(data=root_payload(request, "tax"), partial=True)
        serializer.is_valid(raise_exception=True)
        return Response({"tax": tax_out(tax_update(tax=tax, values=dict(serializer.validated_data)))})

    @lago_operation("destroyTax", response="Tax", root="tax")
    def delete(self, request, code: str):
        tax = tax_get_for_write(service=request.auth.service, code=code)
        body = tax_out(tax)
        tax_delete(tax=tax)
        return Response({"tax": body})


class AddOnListCreateView(APIView):
    @lago_operation("createAddOn", request=AddOnIn, root="add_on", response="AddOn")
    def post(self, request):
        serializer = AddOnIn(data=root_payload(request, "add_on"))
        serializer.is_valid(raise_exception=True)
        add_on = add_on_create(service=request.auth.service, values=dict(serializer.validated_data))
        return Response({"add_on": add_on_out(add_on)})

    @lago_operation("findAllAddOns", response="AddOn", plural="add_ons")
    def get(self, request):
        add_ons = add_on_list(service=request.auth.service)
        return Response(paginate(request, add_ons, "add_ons", lambda items: [add_on_out(a) for a in items]))


class AddOnDetailView(APIView):
    @lago_operation("findAddOn", response="AddOn", root="add_on")
    def get(self, request, code: str):
        return Response({"add_on": add_on_out(add_on_get(service=request.auth.service, code=code))})

    @lago_operation("updateAddOn", request=AddOnIn, root="add_on", partial=True, response="AddOn")
    def put(self, request, code: str):
        add_on = add_on_get(service=request.auth.service, code=code)
        serializer = AddOnIn(data=root_payload(request, "add_on"), partial=True)
        serializer.is_valid(raise_exception=True)
        return Response({"add_on": add_on_out(add_on_update(add_on=add_on, values=dict(serializer.validated_data)))})

    @lago_operation("destroyAddOn", response="AddOn", root="add_on")
    def delete(self, request, code: str):
        add_on = add_on_get(service=request.auth.service, code=code)
        return Response({"add_on": add_on_out(add_on_delete(add_on=add_on))})
