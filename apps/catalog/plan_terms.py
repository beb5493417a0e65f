"""Services for a plan's billing terms beside its price and charges: the minimum commitment (Lago's
`minimum_commitment`) and the usage thresholds of progressive billing (`usage_thresholds`), and plan overrides (a
subscription's own copy of its plan, Lago's `plan_overrides`). Plan writes that carry them go through here, so a plan and its terms change in one transaction."""
from __future__ import annotations

from django.db import transaction

from apps.core.exceptions import ValidationFailed
from apps.customers.models import Service

from .models import Charge, Commitment, Plan, UsageThreshold, plan_commitment
from .services import charge_filters_write, filter_values_errors, plan_create, plan_update

_UNSET = object()


def plan_commitment_set(*, plan: Plan, commitment: dict | None) -> None:
    """Set the plan's minimum commitment (Lago's rules): a dict with values creates or updates it, an empty dict
    removes it, None leaves it as it is. Call inside a transaction."""
    if commitment is None:
        return
    if not commitment:
        Commitment.objects.filter(plan=plan).delete()
        return
    found = Commitment.objects.select_for_update().filter(plan=plan).first()
    if found is None:
        if "amount_cents" not in commitment:
            return  # nothing to create from (Lago requires the amount on creation)
        Commitment.objects.create(
            plan=plan, amount_cents=commitment["amount_cents"],
            invoice_display_name=commitment.get("invoice_display_name") or "",
        )
        return
    for field in ("amount_cents", "invoice_display_name"):
        if field in commitment:
            setattr(found, field, commitment[field] or ("" if field == "invoice_display_name" else 0))
    found.save()


def plan_thresholds_set(*, plan: Plan, thresholds: list[dict] | None) -> None:
    """Replace the plan's usage thresholds with `thresholds` (None leaves them). A threshold kept (same amount and
    recurrence) keeps its identity. Call inside a transaction."""
    if thresholds is None:
        return
    existing = {(t.amount_cents, t.recurring): t for t in UsageThreshold.objects.select_for_update().filter(plan=plan)}
    keep = set()
    for item in thresholds:
        wanted = (item["amount_cents"], bool(item.get("recurring")))
        name = item.get("threshold_display_name") or ""
        found = existing.get(wanted)
        if found is None:
            if wanted[1]:  # one recurring threshold per plan: a new amount replaces the old one
                UsageThreshold.objects.filter(plan=plan, recurring=True).delete()
            found = UsageThreshold.objects.create(
                plan=plan, amount_cents=wanted[0], recurring=wanted[1], threshold_display_name=name
            )
        elif found.threshold_display_name != name:
            found.threshold_display_name = name
            found.save(update_fields=["threshold_display_name", "updated_at"])
        keep.add(found.pk)
    UsageThreshold.objects.filter(plan=plan).exclude(pk__in=keep).delete()


@transaction.atomic
def plan_create_with_terms(*, service: Service, values: dict, charges: list[dict], terms: dict) -> Plan:
    """Create a plan with its charges and terms (`terms`: `minimum_commitment`, `usage_thresholds`)."""
    plan = plan_create(service=service, values=values, charges=charges)
    plan_commitment_set(plan=plan, commitment=terms.get("minimum_commitment"))
    plan_thresholds_set(plan=plan, thresholds=terms.get("usage_thresholds"))
    return plan


@transaction.atomic
def plan_update_with_terms(*, plan: Plan, values: dict, charges: list[dict] | None, terms: dict) -> Plan:
    """Update a plan, its charges (when given) and its terms (those given)."""
    plan = plan_update(plan=plan, values=values, charges=charges)
    plan_commitment_set(plan=plan, commitment=terms.get("minimum_commitment"))
    plan_thresholds_set(plan=plan, thresholds=terms.get("usage_thresholds"))
    return plan


PLAN_OVERRIDE_FIELDS = ("amount_cents", "amount_currency", "name", "invoice_display_name", "description", "trial_period")
CHARGE_OVERRIDE_FIELDS = ("min_amount_cents", "invoice_display_name", "properties")


def _charge_overrides_apply(charge: Charge, overrides: dict) -> None:
    for field in CHARGE_OVERRIDE_FIELDS:
        if field in overrides:
            setattr(charge, field, overrides[field] if overrides[field] is not None else getattr(charge, field))


def _charge_filters_override(charge: Charge, overrides: dict) -> None:
    """An override's `filters` replace the saved charge's filters (Lago's batch form; values checked against the
    metric as on a plan)."""
    filters = overrides.get("filters")
    if filters is None:
        return
    errors = [problem for item in filters for problem in filter_values_errors(charge.billable_metric, item.get("values"))]
    if errors:
        raise ValidationFailed("invalid charge filters", details={"filters": sorted(set(errors))})
    charge_filters_write(charge=charge, filters=filters)


def plan_override(*, plan: Plan, overrides: dict) -> Plan:
    """Return a child of `plan` with `overrides` (Lago's `plan_overrides`: base price, names, trial, charges by id,
    minimum commitment, usage thresholds) for one subscription. The child is a full copy taken now: its charges,
    commitment and thresholds are the parent's but for what is overridden. Call inside a transaction."""
    parent = plan.parent or plan
    child = Plan.objects.create(
        service=parent.service, code=parent.code, interval=plan.interval, pay_in_advance=plan.pay_in_advance,
        parent=parent, **{field: getattr(plan, field) for field in PLAN_OVERRIDE_FIELDS},
    )
    _plan_fields_apply(child, overrides)
    by_id = {str(item["id"]): item for item in overrides.get("charges") or [] if item.get("id")}
    for charge in plan.charges.all().order_by("id"):
        copy = Charge(
            plan=child, billable_metric_id=charge.billable_metric_id, code=charge.code,
            invoice_display_name=charge.invoice_display_name, charge_model=charge.charge_model,
            properties=charge.properties, pay_in_advance=charge.pay_in_advance, invoiceable=charge.invoiceable,
            prorated=charge.prorated, min_amount_cents=charge.min_amount_cents,
        )
        wanted = by_id.get(str(charge.lago_id), {})
        _charge_overrides_apply(copy, wanted)
        copy.save()
        charge_filters_write(charge=copy, filters=[
            {"values": item.values, "properties": item.properties, "invoice_display_name": item.invoice_display_name}
            for item in charge.live_filters
        ])
        _charge_filters_override(copy, wanted)
    commitment = plan_commitment(plan)
    if commitment is not None:
        Commitment.objects.create(plan=child, amount_cents=commitment.amount_cents,
                                  invoice_display_name=commitment.invoice_display_name)
    for threshold in plan.usage_thresholds.all():
        UsageThreshold.objects.create(plan=child, amount_cents=threshold.amount_cents, recurring=threshold.recurring,
                                      threshold_display_name=threshold.threshold_display_name)
    _terms_apply(child, overrides)
    return child


def plan_override_update(*, child: Plan, overrides: dict) -> Plan:
    """Change a subscription's own plan (a child) in place with more `overrides` (Lago updates the child)."""
    child = Plan.objects.select_for_update().get(pk=child.pk)
    _plan_fields_apply(child, overrides)
    by_id = {str(item["id"]): item for item in overrides.get("charges") or [] if item.get("id")}
    for charge in child.charges.all():
        # A charge is named by its own id or by the parent charge it copies (an app knows the parent plan's ids).
        wanted = by_id.get(str(charge.lago_id))
        if wanted is None and child.parent_id:
            parent_charge = Charge.objects.filter(plan_id=child.parent_id, code=charge.code).first()
            wanted = by_id.get(str(parent_charge.lago_id)) if parent_charge else None
        if wanted:
            _charge_overrides_apply(charge, wanted)
            charge.save()
            _charge_filters_override(charge, wanted)
    _terms_apply(child, overrides)
    return child


def _plan_fields_apply(plan: Plan, overrides: dict) -> None:
    changed = [field for field in PLAN_OVERRIDE_FIELDS if field in overrides and overrides[field] is not None]
    for field in changed:
        setattr(plan, field, overrides[field])
    if changed:
        plan.save()


def _terms_apply(plan: Plan, overrides: dict) -> None:
    if overrides.get("minimum_commitment"):
        plan_commitment_set(plan=plan, commitment=overrides["minimum_commitment"])
    if overrides.get("usage_thresholds"):
        plan_thresholds_set(plan=plan, thresholds=overrides["usage_thresholds"])
