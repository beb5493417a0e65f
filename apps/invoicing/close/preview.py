"""What a customer's next invoice would be, by the close's own planner and rating (staff's preview before a close).

The close is planned as of the end of the customer's earliest running period, with the usage known now: the lines
the close would write on that billing day (base fees, in-advance fees of the next period, usage charges, late usage),
taxed at that day's rates. A plan change due at that instant is not applied first (the close applies it): the preview
shows the plan in force now. Nothing is written and no lock is taken: a preview that reads while a close bills the
customer is only stale, never wrong money. Coupons, credit notes and prepaid credits come off at finalization and
are not part of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from django.utils import timezone

from apps.customers.models import Customer
from apps.subscriptions.models import Subscription
from apps.subscriptions.selectors import current_period_end

from ..fees import Line, customer_tax_rates, fee_taxes
from ..models import Fee
from .planning import plan_locked
from .usage import _usage_totals


@dataclass
class InvoicePreview:
    billing_on: date
    currency: str
    lines: list[Line]
    fees_amount_cents: int
    taxes_amount_cents: int

    @property
    def total_amount_cents(self) -> int:
        return self.fees_amount_cents + self.taxes_amount_cents


def invoice_preview(*, customer_id: int, at: datetime | None = None) -> list[InvoicePreview]:
    """The customer's next invoice(s), one per currency billed that day; empty without a running subscription."""
    at = at or timezone.now()
    customer = Customer.objects.get(pk=customer_id)
    running = list(Subscription.objects.filter(customer=customer, status=Subscription.Status.ACTIVE)
                   .select_related("plan"))
    if not running:
        return []
    as_of = min(current_period_end(subscription, at=at) for subscription in running)
    plans, _ = plan_locked([customer], as_of=as_of, fetch=_usage_totals, strict=True)
    lines = [line for line in plans.get(customer.pk, ([], {}))[0] if line.fee_type != Fee.FeeType.CREDIT]
    if not lines:
        return []
    day = min(line.billing_on for line in lines)
    rates = customer_tax_rates(customer, on=day)
    previews = []
    for currency in sorted({line.currency for line in lines if line.billing_on == day}):
        mine = [line for line in lines if line.billing_on == day and line.currency == currency]
        previews.append(InvoicePreview(
            billing_on=day, currency=currency, lines=mine,
            fees_amount_cents=sum(line.amount_cents for line in mine),
            taxes_amount_cents=sum(fee_taxes(line.amount_cents, rates)[0] for line in mine),
        ))
    return previews

