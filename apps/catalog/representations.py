"""Lago's bodies for catalog objects (taxes, billable metrics, charges, plans, add-ons): plain functions of the models, used
by the API and by webhook payloads that embed them."""
from __future__ import annotations

from apps.core.representations import decimal_str, ts
from .pricing_groups import properties_group_keys_out

from .models import AddOn, AppliedCoupon, BillableMetric, Charge, ChargeFilter, Coupon, Plan, plan_commitment


def tax_out(tax) -> dict:
    return {
        "lago_id": str(tax.lago_id),
        "name": tax.name,
        "code": tax.code,
        # A percentage, not money: Lago sends it as a JSON number (13.0); numeric(9,5) is exact in a double.
        "rate": float(tax.rate),
        "description": tax.description or None,
        "applied_to_organization": tax.service_id is None,
        "country": tax.country or None,
        "provinces": list(tax.provinces),
        "created_at": ts(tax.created_at),
    }


def billable_metric_out(metric: BillableMetric) -> dict:
    return {
        "lago_id": str(metric.lago_id),
        "name": metric.name,
        "code": metric.code,
        "description": metric.description or None,
        "aggregation_type": metric.aggregation_type,
        "field_name": metric.field_name or None,
        "recurring": metric.recurring,
        "weighted_interval": metric.weighted_interval or None,
        "expression": None,
        "rounding_function": metric.rounding_function or None,
        "rounding_precision": metric.rounding_precision,
        "filters": metric.filters or [],
        "created_at": ts(metric.created_at),
        "active_subscriptions_count": 0,
        "draft_invoices_count": 0,
        "plans_count": 0,
    }


def charge_out(charge: Charge) -> dict:
    return {
        "lago_id": str(charge.lago_id),
        "lago_billable_metric_id": str(charge.billable_metric.lago_id),
        "billable_metric_code": charge.billable_metric.code,
        "code": charge.code,
        "invoice_display_name": charge.invoice_display_name or None,
        "created_at": ts(charge.created_at),
        "charge_model": charge.charge_model,
        "pay_in_advance": charge.pay_in_advance,
        "invoiceable": charge.invoiceable,
        "regroup_paid_fees": None,
        "prorated": charge.prorated,
        "min_amount_cents": charge.min_amount_cents,
        "properties": properties_group_keys_out(charge.properties),
        "filters": [charge_filter_out(item) for item in charge.live_filters],
        "taxes": [],
    }


def charge_filter_out(item: ChargeFilter) -> dict:
    """Lago's ChargeFilterObject (inside a charge)."""
    return {
        "invoice_display_name": item.invoice_display_name or None,
        "properties": properties_group_keys_out(item.properties),
        "values": item.values,
    }


def charge_filter_full_out(item: ChargeFilter) -> dict:
    """Lago's ChargeFilterFullObject (/plans/{code}/charges/{charge_code}/filters): the filter with its id and
    charge."""
    return {"lago_id": str(item.lago_id), "charge_code": item.charge.code, **charge_filter_out(item)}


def plan_out(plan: Plan) -> dict:
    return {
        "lago_id": str(plan.lago_id),
        "name": plan.name,
        "code": plan.code,
        "created_at": ts(plan.created_at),
        "interval": plan.interval,
        "description": plan.description or None,
        "invoice_display_name": plan.invoice_display_name or None,
        "amount_cents": plan.amount_cents,
        "amount_currency": plan.amount_currency,
        "trial_period": plan.trial_period,
        "pay_in_advance": plan.pay_in_advance,
        "metadata": plan.metadata,
        "bill_charges_monthly": None,
        "minimum_commitment": minimum_commitment_out(plan),
        "usage_thresholds": [usage_threshold_out(threshold) for threshold in plan.usage_thresholds.all()],
        "taxes": [],
        "charges": [charge_out(charge) for charge in plan.charges.all()],
    }


def usage_threshold_out(threshold) -> dict:
    return {
        "lago_id": str(threshold.lago_id),
        "threshold_display_name": threshold.threshold_display_name or None,
        "amount_cents": threshold.amount_cents,
        "recurring": threshold.recurring,
        "created_at": ts(threshold.created_at),
        "updated_at": ts(threshold.updated_at),
    }


def minimum_commitment_out(plan: Plan) -> dict | None:
    commitment = plan_commitment(plan)
    if commitment is None:
        return None
    return {
        "lago_id": str(commitment.lago_id),
        "plan_code": plan.code,
        "invoice_display_name": commitment.invoice_display_name or None,
        "commitment_type": "minimum_commitment",
        "amount_cents": commitment.amount_cents,
        "interval": plan.interval,
        "created_at": ts(commitment.created_at),
        "updated_at": ts(commitment.updated_at),
        "taxes": [],  # tax follows the customer's province (README, deviations)
    }


def add_on_out(add_on: AddOn) -> dict:
    return {
        "lago_id": str(add_on.lago_id),
        "name": add_on.name,
        "invoice_display_name": add_on.invoice_display_name or None,
        "code": add_on.code,
        "amount_cents": add_on.amount_cents,
        "amount_currency": add_on.amount_currency,
        "description": add_on.description or None,
        "created_at": ts(add_on.created_at),
        # Tax follows the customer's province, not the catalog item (README, deviations).
        "taxes": [],
    }


def coupon_out(coupon: Coupon) -> dict:
    plan_codes = [plan.code for plan in coupon.plans.all()]
    metric_codes = [metric.code for metric in coupon.billable_metrics.all()]
    return {
        "lago_id": str(coupon.lago_id),
        "name": coupon.name,
        "code": coupon.code,
        "description": coupon.description or None,
        "coupon_type": coupon.coupon_type,
        "amount_cents": coupon.amount_cents,
        "amount_currency": coupon.amount_currency or None,
        "percentage_rate": decimal_str(coupon.percentage_rate) if coupon.percentage_rate is not None else None,
        "frequency": coupon.frequency,
        "frequency_duration": coupon.frequency_duration,
        "reusable": coupon.reusable,
        "limited_plans": bool(plan_codes),
        "plan_codes": sorted(plan_codes),
        "limited_billable_metrics": bool(metric_codes),
        "billable_metric_codes": sorted(metric_codes),
        "expiration": coupon.expiration,
        "expiration_at": ts(coupon.expiration_at),
        "created_at": ts(coupon.created_at),
        "terminated_at": ts(coupon.terminated_at),
    }


def applied_coupon_out(applied: AppliedCoupon, *, with_credits: bool = False) -> dict:
    """Lago's AppliedCoupon, as the service that applied it addresses the customer (its account link)."""
    coupon, link = applied.coupon, applied.account_link
    return {
        "lago_id": str(applied.lago_id),
        "lago_coupon_id": str(coupon.lago_id),
        "coupon_code": coupon.code,
        "coupon_name": coupon.name,
        "lago_customer_id": str(link.lago_id),
        "external_customer_id": link.external_id,
        "status": applied.status,
        "amount_cents": applied.amount_cents,
        "amount_cents_remaining": applied.amount_cents_remaining,
        "amount_currency": applied.amount_currency or None,
        "percentage_rate": decimal_str(applied.percentage_rate) if applied.percentage_rate is not None else None,
        "frequency": applied.frequency,
        "frequency_duration": applied.frequency_duration,
        "frequency_duration_remaining": applied.frequency_duration_remaining,
        "expiration_at": ts(coupon.expiration_at),
        "created_at": ts(applied.created_at),
        "terminated_at": ts(applied.terminated_at),
        **({"credits": applied_coupon_credits_out(applied)} if with_credits else {}),
    }


def applied_coupon_credits_out(applied: AppliedCoupon) -> list[dict]:
    """Lago's `credits` of an applied coupon in lists: what it took off each invoice (before tax)."""
    return [
        {
            "lago_id": str(credit.lago_id),
            "amount_cents": credit.amount_cents,
            "amount_currency": credit.currency,
            "before_taxes": True,
            "item": {"lago_item_id": str(applied.lago_id), "type": "coupon", "code": applied.coupon.code,
                     "name": applied.coupon.name},
            "invoice": {"lago_id": str(credit.invoice.lago_id), "payment_status": credit.invoice.payment_status},
        }
        for credit in applied.credits.select_related("invoice").order_by("id")
    ]
