"""Coupons consumed by subscription invoices at finalization, before tax (Lago's order: apps/invoicing/discounts.py).

Finalization is the one moment an invoice's amounts become final and happens once per invoice (drafts are
locked, then numbered): applying coupons there makes "the close ran twice" or "two finalizers raced" harmless.
A draft therefore shows no coupon yet (Lago shows it on drafts and recomputes on refresh); the finalized
invoice is what is collected and posted. Coupons come before credit notes and prepaid credit, which come off
after tax (`credits.credits_apply`, called next).

Concurrency: the customers' active applied coupons are locked `FOR UPDATE` (by id) in the finalizing transaction
before they are read, so two invoices of one customer finalizing at once take turns and the second sees what the
first consumed. One `CouponCredit` per (invoice, applied coupon) is also a unique constraint.
"""
from __future__ import annotations

from collections import defaultdict

from django.db.models import prefetch_related_objects
from django.utils import timezone

from apps.catalog.models import AppliedCoupon

from .discounts import CouponState, CouponUse, FeeBase, coupons_allocate
from .fees import _rates_of, fee_taxes
from .models import CouponCredit, Fee, Invoice, InvoiceAppliedTax


def _states(rows: list[AppliedCoupon]) -> list[CouponState]:
    return [
        CouponState(
            applied_coupon_id=row.pk,
            service_id=row.coupon.service_id,
            coupon_type=row.coupon.coupon_type,
            frequency=row.frequency,
            currency=row.amount_currency,
            amount_cents=row.amount_cents,
            amount_cents_remaining=row.amount_cents_remaining,
            percentage_rate=row.percentage_rate,
            frequency_duration_remaining=row.frequency_duration_remaining,
            plan_ids=frozenset(plan.pk for plan in row.coupon.plans.all()),
            metric_ids=frozenset(metric.pk for metric in row.coupon.billable_metrics.all()),
            order=(row.created_at, row.pk),
        )
        for row in rows
    ]


def coupons_apply(invoices: list[Invoice]) -> list[CouponCredit]:
    """Take the customers' active coupons off finalizing subscription invoices, in list order; return unsaved rows.

    Rewrites the discounted fees (coupon share, tax on what is left) and the invoices' per-rate tax rows, sets the
    invoices' coupon, subtotal, tax and total fields in memory, and saves the applied coupons' remaining amounts.
    Call in the finalizing transaction with the drafts locked, before credit is applied and before the invoices'
    rows are written or updated; save the returned rows after them.
    """
    subscription = [invoice for invoice in invoices if invoice.invoice_type == Invoice.InvoiceType.SUBSCRIPTION]
    if not subscription:
        return []
    customer_ids = sorted({invoice.customer_id for invoice in subscription})
    locked = list(
        AppliedCoupon.objects.select_for_update(of=("self",))
        .filter(customer_id__in=customer_ids, status=AppliedCoupon.Status.ACTIVE)
        .select_related("coupon")
        .order_by("pk")
    )
    if not locked:
        return []
    prefetch_related_objects([row.coupon for row in locked], "plans", "billable_metrics")
    by_customer: dict[int, list[CouponState]] = defaultdict(list)
    states = _states(locked)
    for row, state in zip(locked, states):
        by_customer[row.customer_id].append(state)

    targets = [invoice for invoice in subscription if invoice.customer_id in by_customer]
    fees_of: dict[int, list[Fee]] = defaultdict(list)
    for fee in Fee.objects.filter(invoice_id__in=[invoice.pk for invoice in targets]).select_related(
        "subscription", "charge"
    ).order_by("pk"):
        fees_of[fee.invoice_id].append(fee)

    credits: list[CouponCredit] = []
    for invoice in targets:
        fees = fees_of.get(invoice.pk, [])
        live = [state for state in by_customer[invoice.customer_id] if not state.terminated]
        uses = coupons_allocate(
            currency=invoice.currency,
            fees=[
                FeeBase(
                    fee_id=fee.pk, service_id=fee.service_id,
                    plan_id=fee.subscription.plan_id if fee.subscription_id else None,
                    metric_id=fee.charge.billable_metric_id if fee.charge_id else None,
                    amount_cents=fee.amount_cents - fee.coupons_amount_cents,
                )
                for fee in fees
            ],
            coupons=live,
        )
        if uses:
            credits.extend(_discount(invoice, fees, uses))
    _save(locked, states)
    return credits


def _discount(invoice: Invoice, fees: list[Fee], uses: list[CouponUse]) -> list[CouponCredit]:
    """Write the coupons' shares and the re-taxed fees; set the invoice's amounts (in memory)."""
    from apps.catalog.taxes import invoice_totals

    share: dict[int, int] = defaultdict(int)
    for use in uses:
        for fee_id, cents in use.shares.items():
            share[fee_id] += cents
    changed = []
    for fee in fees:
        if share.get(fee.pk):
            fee.coupons_amount_cents += share[fee.pk]
            rates = _rates_of(fee)
            fee.taxes_amount_cents, fee.taxes_rate, fee.applied_taxes = fee_taxes(
                fee.amount_cents - fee.coupons_amount_cents, rates)
            changed.append(fee)
    Fee.objects.bulk_update(changed, ["coupons_amount_cents", "taxes_amount_cents", "taxes_rate", "applied_taxes"])
    totals = invoice_totals([(fee.amount_cents - fee.coupons_amount_cents, _rates_of(fee)) for fee in fees])
    InvoiceAppliedTax.objects.filter(invoice_id=invoice.pk).delete()
    InvoiceAppliedTax.objects.bulk_create(
        InvoiceAppliedTax(invoice_id=invoice.pk, tax_code=line.code, tax_name=line.name, tax_rate=line.rate,
                          base_amount_cents=line.base_amount_cents, amount_cents=line.tax_amount_cents)
        for line in totals.tax_lines
    )
    invoice.coupons_amount_cents = sum(fee.coupons_amount_cents for fee in fees)
    invoice.sub_total_excluding_taxes_amount_cents = totals.untaxed_amount_cents
    invoice.taxes_amount_cents = totals.tax_amount_cents
    invoice.sub_total_including_taxes_amount_cents = totals.total_amount_cents
    invoice.total_amount_cents = totals.total_amount_cents - invoice.credit_notes_amount_cents \
        - invoice.prepaid_credit_amount_cents
    return [
        CouponCredit(invoice_id=invoice.pk, applied_coupon_id=use.applied_coupon_id, amount_cents=use.amount_cents,
                     currency=invoice.currency, fee_shares={str(k): v for k, v in use.shares.items()})
        for use in uses if use.amount_cents > 0
    ]


def _save(rows: list[AppliedCoupon], states: list[CouponState]) -> None:
    now = timezone.now()
    changed = []
    for row, state in zip(rows, states):
        after = (state.amount_cents_remaining, state.frequency_duration_remaining, state.terminated)
        if after == (row.amount_cents_remaining, row.frequency_duration_remaining, False):
            continue
        row.amount_cents_remaining, row.frequency_duration_remaining = after[0], after[1]
        if state.terminated:
            row.status, row.terminated_at = AppliedCoupon.Status.TERMINATED, now
        changed.append(row)
    if changed:
        AppliedCoupon.objects.bulk_update(
            changed, ["amount_cents_remaining", "frequency_duration_remaining", "status", "terminated_at"])
