"""Services for a plan's billing terms beside its price and charges: the minimum commitment (Lago's
`minimum_commitment`) and the usage thresholds of progressive billing (`usage_thresholds`). Plan writes that carry them go through here, so a plan and its terms change in one transaction."""
from __future__ import annotations

from django.db import transaction

from apps.customers.models import Service

from .models import Commitment, Plan, UsageThreshold
from .services import plan_create, plan_update

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
