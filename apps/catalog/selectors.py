"""Reads for the catalog, scoped by the calling service."""
from __future__ import annotations

from django.db.models import Prefetch, Q, QuerySet

from apps.core.exceptions import Forbidden, NotFound
from apps.customers.models import Service

from .models import AddOn, BillableMetric, Charge, Plan, Tax


def billable_metric_list(*, service: Service) -> QuerySet[BillableMetric]:
    return BillableMetric.objects.filter(service=service, deleted_at__isnull=True).order_by("-created_at", "-id")


def billable_metric_get(*, service: Service, code: str) -> BillableMetric:
    metric = billable_metric_list(service=service).filter(code=code).first()
    if metric is None:
        raise NotFound("billable_metric")
    return metric


def plan_list(*, service: Service) -> QuerySet[Plan]:
    charges = Charge.objects.select_related("billable_metric").order_by("id")
    return (
        Plan.objects.filter(service=service, deleted_at__isnull=True)
        .prefetch_related(Prefetch("charges", queryset=charges))
        .order_by("-created_at", "-id")
    )


def plan_get(*, service: Service, code: str) -> Plan:
    plan = plan_list(service=service).filter(code=code).first()
    if plan is None:
        raise NotFound("plan")
    return plan


def tax_list(*, service: Service) -> QuerySet[Tax]:
    """Hub-wide taxes plus the service's own."""
    return Tax.objects.filter(Q(service__isnull=True) | Q(service=service)).order_by("code")


def tax_get(*, service: Service, code: str) -> Tax:
    tax = tax_list(service=service).filter(code=code).first()
    if tax is None:
        raise NotFound("tax")
    return tax


def tax_get_for_write(*, service: Service, code: str) -> Tax:
    """Return a tax the service may change: its own. Hub-wide taxes are staff-managed."""
    tax = tax_get(service=service, code=code)
    if tax.service_id != service.pk:
        raise Forbidden("hub-wide taxes are managed by staff", code="tax_managed_by_hub")
    return tax


def add_on_list(*, service: Service) -> QuerySet[AddOn]:
    return AddOn.objects.filter(service=service, deleted_at__isnull=True).order_by("-created_at", "-id")


def add_on_get(*, service: Service, code: str) -> AddOn:
    add_on = add_on_list(service=service).filter(code=code).first()
    if add_on is None:
        raise NotFound("add_on")
    return add_on
