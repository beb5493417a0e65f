"""Drafts re-planned with the usage known now, then finalized once their grace period is over.

A draft left open by the close (a grace period for late usage) is refreshed through the close's own planner and
writer (`plan_locked`, `_write_batch`), under the same locks in the same order: customer, then invoice.
"""
from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from apps.customers.models import Customer

from ..fees import customer_tax_rates, invoice_recompute_totals
from ..models import Fee, Invoice, InvoiceSubscription
from ..services import invoice_finalize
from .planning import plan_locked
from .usage import UsageFetcher, _late_usage_mark_billed, _usage_totals
from .writing import _write_batch


def invoice_refresh(*, invoice_id: int, now: datetime | None = None, fetch: UsageFetcher = _usage_totals) -> Invoice:
    """Recompute a draft subscription invoice's fees with the usage known now; others are returned unchanged."""
    now = now or timezone.now()
    with transaction.atomic():
        customer_id = Invoice.objects.values_list("customer_id", flat=True).get(pk=invoice_id)
        customer = Customer.objects.select_for_update().get(pk=customer_id)  # same lock order as the close
        invoice = Invoice.objects.select_for_update().get(pk=invoice_id)
        if invoice.status != Invoice.Status.DRAFT or invoice.invoice_type != Invoice.InvoiceType.SUBSCRIPTION:
            return invoice
        replanned = invoice.fees.filter(is_adjustment=False)
        # The periods of the fees deleted here are planned again even when a later invoice of the same
        # subscription (a later period, billed by the same close or since) moved the planner's scan start past
        # them: else their fees, and the usage they billed, would be on no invoice.
        rescan_from = dict(
            replanned.filter(subscription__isnull=False, from_datetime__isnull=False).order_by()
            .values_list("subscription_id").annotate(first=Min("from_datetime")).values_list("subscription_id", "first")
        )
        replanned.delete()
        InvoiceSubscription.objects.filter(invoice=invoice).delete()
        # Re-plan as the close did when it opened this draft (its grace window started at the close).
        plans, _ = plan_locked(
            [customer], as_of=max(now, invoice.created_at), fetch=fetch, strict=True, rescan_from=rescan_from
        )
        day = invoice.issuing_date
        lines = [
            line
            for line in plans.get(customer.pk, ([], {}))[0]
            # Late usage too only when the planner dates it on this draft's day (`_late_billing_days`: with its
            # subscription's period lines, or the customer's invoice once the subscription ended), never on the
            # draft of another subscription's period: one invoice per customer and billing day, whenever it runs.
            if line.currency == invoice.currency and line.billing_on == day
            and line.fee_type != Fee.FeeType.CREDIT  # credit notes, issued by the close (`split_credits`)
        ]
        if lines:
            touched, _ = _write_batch({customer.pk: customer}, {customer.pk: (lines, {day: customer_tax_rates(customer, on=day)})}, as_of=now)
            if [found.pk for found in touched[customer.pk]] != [invoice.pk]:
                raise RuntimeError(f"refresh of draft {invoice.pk} wrote elsewhere: {touched[customer.pk]}")
            _late_usage_mark_billed(lines, as_of=now)
        else:
            invoice_recompute_totals(invoice)
        invoice.refresh_from_db()
        return invoice


def invoices_finalize_due(*, now: datetime | None = None) -> int:
    """Refresh then finalize drafts whose grace period has passed. Returns how many were finalized."""
    now = now or timezone.now()
    due = Invoice.objects.filter(status=Invoice.Status.DRAFT, grace_until__lte=now).values_list("pk", flat=True)
    count = 0
    for invoice_id in list(due):
        invoice_refresh(invoice_id=invoice_id, now=now)
        invoice = invoice_finalize(invoice_id=invoice_id, now=now)
        count += invoice.status == Invoice.Status.FINALIZED
    return count
