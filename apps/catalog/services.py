"""Writes for the catalog: billable metrics, plans with their charges, taxes, add-ons.

Inputs arrive validated by the API layer (types, enums, Lago's per-model charge
properties); these functions enforce the rules that need the database.
"""
from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.exceptions import NotAllowed, NotFound, ValidationFailed
from apps.customers.models import Service

from .models import AddOn, BillableMetric, Charge, Plan, Tax

METRIC_FIELDS = (
    "code",
    "name",
    "description",
    "aggregation_type",
    "field_name",
    "recurring",
    "weighted_interval",
    "rounding_function",
    "rounding_precision",
    "filters",
)
# Lago: recurring makes no sense for these aggregations (units do not carry over).
NON_RECURRING_AGGREGATIONS = {"count_agg", "max_agg", "latest_agg"}


def _metric_rules(values: dict) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if values.get("aggregation_type") != "count_agg" and not values.get("field_name"):
        errors["field_name"] = ["value_is_mandatory"]
    if values.get("recurring") and values.get("aggregation_type") in NON_RECURRING_AGGREGATIONS:
        errors["recurring"] = ["not_compatible_with_aggregation_type"]
    return errors


@transaction.atomic
def billable_metric_create(*, service: Service, values: dict) -> BillableMetric:
    errors = _metric_rules(values)
    if BillableMetric.objects.filter(service=service, code=values["code"], deleted_at__isnull=True).exists():
        errors["code"] = ["value_already_exist"]
    if errors:
        raise ValidationFailed("invalid billable metric", details=errors)
    try:
        with transaction.atomic():
            return BillableMetric.objects.create(service=service, **values)
    except IntegrityError:
        raise ValidationFailed("invalid billable metric", details={"code": ["value_already_exist"]}) from None


@transaction.atomic
def billable_metric_update(*, metric: BillableMetric, values: dict) -> BillableMetric:
    metric = BillableMetric.objects.select_for_update().get(pk=metric.pk)
    merged = {field: getattr(metric, field) for field in METRIC_FIELDS} | values
    errors = _metric_rules(merged)
    new_code = values.get("code", metric.code)
    if (
        new_code != metric.code
        and BillableMetric.objects.filter(service=metric.service, code=new_code, deleted_at__isnull=True).exists()
    ):
        errors["code"] = ["value_already_exist"]
    if "aggregation_type" in values and values["aggregation_type"] != metric.aggregation_type:
        if metric.charges.filter(plan__deleted_at__isnull=True).exists():
            # Changing how units are counted would silently reprice live plans.
            errors["aggregation_type"] = ["value_is_invalid"]
    if errors:
        raise ValidationFailed("invalid billable metric", details=errors)
    for field, value in values.items():
        setattr(metric, field, value)
    metric.save()
    return metric


@transaction.atomic
def billable_metric_delete(*, metric: BillableMetric) -> BillableMetric:
    metric = BillableMetric.objects.select_for_update().get(pk=metric.pk)
    if metric.charges.filter(plan__deleted_at__isnull=True).exists():
        raise NotAllowed("billable metric is used by a plan", code="attached_to_an_active_plan")
    metric.deleted_at = timezone.now()
    metric.save(update_fields=["deleted_at", "updated_at"])
    return metric


PLAN_FIELDS = (
    "code",
    "name",
    "description",
    "invoice_display_name",
    "interval",
    "amount_cents",
    "amount_currency",
    "pay_in_advance",
    "trial_period",
)
CHARGE_FIELDS = (
    "code",
    "invoice_display_name",
    "charge_model",
    "properties",
    "pay_in_advance",
    "invoiceable",
    "prorated",
    "min_amount_cents",
    "filters",
)


def _resolve_charges(*, service: Service, charges: list[dict]) -> list[tuple[BillableMetric, dict]]:
    """Map each charge's billable_metric_id (a lago_id) to this service's metric."""
    resolved: list[tuple[BillableMetric, dict]] = []
    errors: dict[str, list[str]] = {}
    seen_codes: set[str] = set()
    metric_ids = {charge["billable_metric_id"] for charge in charges}
    metrics = {
        str(metric.lago_id): metric
        for metric in BillableMetric.objects.filter(
            service=service, lago_id__in=metric_ids, deleted_at__isnull=True
        )
    }
    for index, charge in enumerate(charges):
        metric = metrics.get(str(charge["billable_metric_id"]))
        if metric is None:
            raise NotFound("billable_metric")
        values = {field: charge[field] for field in CHARGE_FIELDS if field in charge}
        values.setdefault("code", f"{metric.code}" if metric.code not in seen_codes else f"{metric.code}_{index}")
        if values["code"] in seen_codes:
            errors.setdefault(f"charges.{index}.code", []).append("value_already_exist")
        seen_codes.add(values["code"])
        if values.get("pay_in_advance") and metric.aggregation_type not in ("count_agg", "sum_agg", "unique_count_agg"):
            errors.setdefault(f"charges.{index}.pay_in_advance", []).append("invalid_aggregation_type_or_charge_model")
        if not values.get("invoiceable", True) and not values.get("pay_in_advance"):
            errors.setdefault(f"charges.{index}.invoiceable", []).append("value_is_invalid")
        resolved.append((metric, values))
    if errors:
        raise ValidationFailed("invalid charges", details=errors)
    return resolved


@transaction.atomic
def plan_create(*, service: Service, values: dict, charges: list[dict]) -> Plan:
    if Plan.objects.filter(service=service, code=values["code"], deleted_at__isnull=True).exists():
        raise ValidationFailed("invalid plan", details={"code": ["value_already_exist"]})
    resolved = _resolve_charges(service=service, charges=charges)
    try:
        with transaction.atomic():
            plan = Plan.objects.create(service=service, **values)
    except IntegrityError:
        raise ValidationFailed("invalid plan", details={"code": ["value_already_exist"]}) from None
    Charge.objects.bulk_create(Charge(plan=plan, billable_metric=metric, **data) for metric, data in resolved)
    return plan


@transaction.atomic
def plan_update(*, plan: Plan, values: dict, charges: list[dict] | None) -> Plan:
    """Update a plan; when `charges` is given it replaces the plan's charges (Lago's PUT semantics).

    Charges are matched by code so that a charge keeps its identity (and its fees' history)
    across updates; charges absent from the list are removed only if nothing billed them.
    """
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    new_code = values.get("code", plan.code)
    if new_code != plan.code and Plan.objects.filter(
        service=plan.service, code=new_code, deleted_at__isnull=True
    ).exists():
        raise ValidationFailed("invalid plan", details={"code": ["value_already_exist"]})
    if plan.subscriptions.exists() and (
        ("amount_currency" in values and values["amount_currency"] != plan.amount_currency)
        or ("interval" in values and values["interval"] != plan.interval)
    ):
        # Lago forbids these once subscribed: periods and currency of live subscriptions would change.
        field = "interval" if "interval" in values and values["interval"] != plan.interval else "amount_currency"
        raise ValidationFailed("plan in use", details={field: ["plan_has_subscriptions"]})
    for field, value in values.items():
        setattr(plan, field, value)
    plan.save()
    if charges is not None:
        resolved = _resolve_charges(service=plan.service, charges=charges)
        existing = {charge.code: charge for charge in plan.charges.all()}
        keep: set[int] = set()
        for metric, data in resolved:
            charge = existing.get(data["code"])
            if charge is None:
                charge = Charge.objects.create(plan=plan, billable_metric=metric, **data)
            else:
                charge.billable_metric = metric
                for field, value in data.items():
                    setattr(charge, field, value)
                charge.save()
            keep.add(charge.pk)
        plan.charges.exclude(pk__in=keep).delete()
    return plan


@transaction.atomic
def plan_delete(*, plan: Plan) -> Plan:
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    if plan.subscriptions.filter(status__in=("active", "pending")).exists():
        raise NotAllowed("plan has live subscriptions", code="plan_has_subscriptions")
    plan.deleted_at = timezone.now()
    plan.save(update_fields=["deleted_at", "updated_at"])
    return plan


TAX_FIELDS = ("code", "name", "description", "rate", "country", "provinces")


@transaction.atomic
def tax_create(*, service: Service, values: dict) -> Tax:
    if Tax.objects.filter(code=values["code"]).exists():
        raise ValidationFailed("invalid tax", details={"code": ["value_already_exist"]})
    try:
        with transaction.atomic():
            return Tax.objects.create(service=service, **values)
    except IntegrityError:
        raise ValidationFailed("invalid tax", details={"code": ["value_already_exist"]}) from None


@transaction.atomic
def tax_update(*, tax: Tax, values: dict) -> Tax:
    tax = Tax.objects.select_for_update().get(pk=tax.pk)
    if "code" in values and values["code"] != tax.code and Tax.objects.filter(code=values["code"]).exists():
        raise ValidationFailed("invalid tax", details={"code": ["value_already_exist"]})
    for field, value in values.items():
        setattr(tax, field, value)
    tax.save()
    return tax


@transaction.atomic
def tax_delete(*, tax: Tax) -> Tax:
    tax = Tax.objects.select_for_update().get(pk=tax.pk)
    tax.delete()
    return tax


ADD_ON_FIELDS = ("code", "name", "invoice_display_name", "description", "amount_cents", "amount_currency")


@transaction.atomic
def add_on_create(*, service: Service, values: dict) -> AddOn:
    if AddOn.objects.filter(service=service, code=values["code"], deleted_at__isnull=True).exists():
        raise ValidationFailed("invalid add-on", details={"code": ["value_already_exist"]})
    try:
        with transaction.atomic():
            return AddOn.objects.create(service=service, **values)
    except IntegrityError:  # a concurrent create took the code between the check and the insert
        raise ValidationFailed("invalid add-on", details={"code": ["value_already_exist"]}) from None


@transaction.atomic
def add_on_update(*, add_on: AddOn, values: dict) -> AddOn:
    """Change an add-on. Invoices already issued keep their fees: a fee copies the price and name it billed."""
    add_on = AddOn.objects.select_for_update().get(pk=add_on.pk)
    new_code = values.get("code", add_on.code)
    if new_code != add_on.code and AddOn.objects.filter(
        service=add_on.service, code=new_code, deleted_at__isnull=True
    ).exists():
        raise ValidationFailed("invalid add-on", details={"code": ["value_already_exist"]})
    for field, value in values.items():
        setattr(add_on, field, value)
    try:
        with transaction.atomic():
            add_on.save()
    except IntegrityError:
        raise ValidationFailed("invalid add-on", details={"code": ["value_already_exist"]}) from None
    return add_on


@transaction.atomic
def add_on_delete(*, add_on: AddOn) -> AddOn:
    """Soft-delete (Lago discards add-ons): the code is free again, issued fees keep theirs."""
    add_on = AddOn.objects.select_for_update().get(pk=add_on.pk)
    if add_on.deleted_at is None:
        add_on.deleted_at = timezone.now()
        add_on.save(update_fields=["deleted_at", "updated_at"])
    return add_on
