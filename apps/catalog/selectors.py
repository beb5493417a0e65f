"""Reads for the catalog, scoped by the calling service."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Prefetch, Q, QuerySet

from apps.core.exceptions import Forbidden, NotFound
from apps.customers.models import Service

from .models import AddOn, AppliedCoupon, BillableMetric, Charge, ChargeFilter, Coupon, Plan, Tax


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
        Plan.objects.filter(service=service, deleted_at__isnull=True, parent__isnull=True)
        .select_related("minimum_commitment")
        .prefetch_related(Prefetch("charges", queryset=charges), "charges__charge_filters", "usage_thresholds")
        .order_by("-created_at", "-id")
    )


def plan_get(*, service: Service, code: str) -> Plan:
    plan = plan_list(service=service).filter(code=code).first()
    if plan is None:
        raise NotFound("plan")
    return plan


def plan_charge_list(*, plan: Plan) -> QuerySet[Charge]:
    """A plan's charges in creation order, ready for charge_out."""
    return plan.charges.select_related("billable_metric").prefetch_related("charge_filters").order_by("id")


def plan_charge_get(*, plan: Plan, code: str) -> Charge:
    charge = plan_charge_list(plan=plan).filter(code=code).first()
    if charge is None:
        raise NotFound("charge")
    return charge


def charge_filter_list(*, charge: Charge) -> QuerySet[ChargeFilter]:
    """A charge's filters in force, in creation order."""
    return charge.charge_filters.filter(deleted_at__isnull=True).select_related("charge").order_by("id")


def charge_filter_get(*, charge: Charge, lago_id: str) -> ChargeFilter:
    try:
        found = charge_filter_list(charge=charge).filter(lago_id=lago_id).first()
    except ValidationError:  # not a UUID
        found = None
    if found is None:
        raise NotFound("charge_filter")
    return found


def own_charge_filter_get(*, charge: Charge, lago_id: str) -> ChargeFilter:
    """charge_filter_get, where a subscription's own plan's charge also answers to the id of the catalog plan's
    filter it copied (the app knows the catalog's ids; the copy has the same values)."""
    try:
        return charge_filter_get(charge=charge, lago_id=lago_id)
    except NotFound:
        if charge.plan.parent_id is None:
            raise
    parent_charge = plan_charge_list(plan=charge.plan.parent).filter(code=charge.code).first()
    if parent_charge is None:
        raise NotFound("charge_filter")
    wanted = _values_key(charge_filter_get(charge=parent_charge, lago_id=lago_id).values)
    found = next((item for item in charge_filter_list(charge=charge) if _values_key(item.values) == wanted), None)
    if found is None:
        raise NotFound("charge_filter")
    return found


def _values_key(values: dict) -> tuple:
    return tuple(sorted((key, tuple(sorted(chosen))) for key, chosen in values.items()))


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


def coupon_list(*, service: Service) -> QuerySet[Coupon]:
    return (
        Coupon.objects.filter(service=service, deleted_at__isnull=True)
        .prefetch_related("plans", "billable_metrics")
        .order_by("-created_at", "-id")
    )


def coupon_get(*, service: Service, code: str) -> Coupon:
    coupon = coupon_list(service=service).filter(code=code).first()
    if coupon is None:
        raise NotFound("coupon")
    return coupon


def applied_coupon_list(
    *, service: Service, external_customer_id: str | None = None, status: str | None = None,
    coupon_codes: list[str] | None = None,
) -> QuerySet[AppliedCoupon]:
    """The coupons the service applied, newest first; a customer is named by the service's own external id."""
    rows = AppliedCoupon.objects.filter(coupon__service=service).select_related("coupon", "account_link")
    if external_customer_id is not None:
        rows = rows.filter(account_link__external_id=external_customer_id, account_link__deleted_at__isnull=True)
    if status:
        rows = rows.filter(status=status)
    if coupon_codes:
        rows = rows.filter(coupon__code__in=coupon_codes)
    return rows.order_by("-created_at", "-id")


def applied_coupon_get(*, service: Service, external_customer_id: str, lago_id: str) -> AppliedCoupon:
    try:
        found = applied_coupon_list(service=service, external_customer_id=external_customer_id).filter(
            lago_id=lago_id).first()
    except ValidationError:  # not a UUID
        found = None
    if found is None:
        raise NotFound("applied_coupon")
    return found
