"""What a customer's next invoice would be, by the close's own planner and rating (staff's preview before a close).

The close is planned as of the end of the customer's earliest running period, with the usage known now: the lines
the close would write on that billing day (base fees, in-advance fees of the next period, usage charges, late usage),
taxed at that day's rates. A plan change due at that instant is not applied first (the close applies it): the preview
shows the plan in force now. Nothing is written and no lock is taken: a preview that reads while a close bills the
customer is only stale, never wrong money. Coupons, credit notes and prepaid credits come off at finalization and
are not part of `invoice_preview`; `preview_invoice` takes the coupons off as finalization would (Lago's
POST /invoices/preview shows them), and leaves credit notes and prepaid credit out (Lago's preview too).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.utils import timezone

from apps.catalog.models import AppliedCoupon, Coupon
from apps.catalog.taxes import invoice_totals
from apps.core.exceptions import NotFound, ValidationFailed
from apps.customers.models import Customer
from apps.subscriptions.models import Subscription
from apps.subscriptions.selectors import current_period_end

from ..coupons import _states
from ..discounts import CouponState, FeeBase, coupons_allocate
from ..fees import Line, _rates_of, customer_tax_rates, fee_taxes, fee_values
from ..models import CouponCredit, Fee, Invoice, InvoiceAppliedTax, InvoiceSubscription
from .planning import plan_locked
from .usage import _usage_totals
from .writing import _period_row


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


def invoice_preview(*, customer_id: int, at: datetime | None = None,
                    subscription_ids: list[int] | None = None) -> list[InvoicePreview]:
    """The customer's next invoice(s), one per currency billed that day; empty without a running subscription.

    `subscription_ids`: only these running subscriptions' lines (Lago's `subscriptions.external_ids`); the day is
    then the earliest of their periods' ends.
    """
    at = at or timezone.now()
    customer = Customer.objects.get(pk=customer_id)
    running = Subscription.objects.filter(customer=customer, status=Subscription.Status.ACTIVE).select_related("plan")
    if subscription_ids is not None:
        running = running.filter(pk__in=subscription_ids)
    running = list(running)
    if not running:
        return []
    as_of = min(current_period_end(subscription, at=at) for subscription in running)
    plans, _ = plan_locked([customer], as_of=as_of, fetch=_usage_totals, strict=True)
    chosen = {subscription.pk for subscription in running}
    lines = [
        line for line in plans.get(customer.pk, ([], {}))[0]
        if line.fee_type != Fee.FeeType.CREDIT and (line.subscription is None or line.subscription.pk in chosen)
    ]
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



def applied_coupon_states(customer: Customer) -> tuple[list[AppliedCoupon], list[CouponState]]:
    """The customer's active coupons as finalization would take them (read, not locked: a preview)."""
    rows = list(
        AppliedCoupon.objects.filter(customer=customer, status=AppliedCoupon.Status.ACTIVE)
        .select_related("coupon").prefetch_related("coupon__plans", "coupon__billable_metrics").order_by("pk")
    )
    return rows, _states(rows)


DECIMALS = ("units", "total_aggregated_units", "precise_unit_amount", "precise_amount")
QUANTUM = Decimal(1).scaleb(-Fee._meta.get_field("precise_amount").decimal_places)


def preview_invoice(preview: InvoicePreview, *, customer: Customer, coupons: list[tuple[AppliedCoupon, CouponState]],
                    now: datetime | None = None) -> Invoice:
    """An unsaved Invoice of `preview`, with its fees, billing periods, taxes and coupon credits attached as
    prefetched rows (`representations.invoice_out` renders it as it renders a stored one).

    The coupons come off before tax as `coupons.coupons_apply` takes them at finalization (the same pure
    allocation, `discounts.coupons_allocate`); `coupons` pairs each applied coupon (stored, or built for the
    preview) with its state, which is consumed in memory only. Nothing is saved.
    """
    now = now or timezone.now()
    rates = customer_tax_rates(customer, on=preview.billing_on)
    invoice = Invoice(
        customer=customer, invoice_type=Invoice.InvoiceType.SUBSCRIPTION, currency=preview.currency,
        issuing_date=preview.billing_on, net_payment_term=customer.net_payment_term,
        payment_due_date=preview.billing_on + timedelta(days=customer.net_payment_term),
        created_at=now, updated_at=now,
    )
    fees: list[Fee] = []
    periods: dict[int, list[Line]] = defaultdict(list)
    for line in preview.lines:
        fee = Fee(invoice=invoice, **fee_values(line, rates=rates), created_at=now, updated_at=now)
        for name in DECIMALS:  # as the row stores them (numeric(30, 12), rounded half away from zero)
            setattr(fee, name, getattr(fee, name).quantize(QUANTUM, ROUND_HALF_UP))
        fee.subscription, fee.charge = line.subscription, line.charge  # the objects the planner read
        fees.append(fee)
        if line.subscription is not None and line.period_from is not None:
            periods[line.subscription.pk].append(line)
    uses = coupons_allocate(
        currency=invoice.currency,
        fees=[
            FeeBase(fee_id=index, service_id=fee.service_id,
                    plan_id=fee.subscription.plan_id if fee.subscription is not None else None,
                    metric_id=fee.charge.billable_metric_id if fee.charge is not None else None,
                    amount_cents=fee.amount_cents)
            for index, fee in enumerate(fees)
        ],
        coupons=[state for _, state in coupons if not state.terminated],
    )
    applied_of = {id(state): row for row, state in coupons}
    by_id = {state.applied_coupon_id: applied_of[id(state)] for _, state in coupons}
    credits = []
    for use in uses:
        for index, cents in use.shares.items():
            fees[index].coupons_amount_cents += cents
        if use.amount_cents > 0:
            credits.append(CouponCredit(invoice=invoice, applied_coupon=by_id[use.applied_coupon_id],
                                        amount_cents=use.amount_cents, currency=invoice.currency, created_at=now))
    for fee in fees:
        if fee.coupons_amount_cents:
            fee.taxes_amount_cents, fee.taxes_rate, fee.applied_taxes = fee_taxes(
                fee.amount_cents - fee.coupons_amount_cents, _rates_of(fee))
    totals = invoice_totals([(fee.amount_cents - fee.coupons_amount_cents, _rates_of(fee)) for fee in fees])
    invoice.fees_amount_cents = sum(fee.amount_cents for fee in fees)
    invoice.coupons_amount_cents = sum(fee.coupons_amount_cents for fee in fees)
    invoice.sub_total_excluding_taxes_amount_cents = totals.untaxed_amount_cents
    invoice.taxes_amount_cents = totals.tax_amount_cents
    invoice.sub_total_including_taxes_amount_cents = invoice.total_amount_cents = totals.total_amount_cents
    billing_periods = []
    for subscription_pk, mine in periods.items():
        row = _period_row(invoice, subscription_pk, mine)
        del row["invoice_id"], row["subscription_id"]
        billing_periods.append(InvoiceSubscription(invoice=invoice, subscription=mine[0].subscription, **row))
    invoice._prefetched_objects_cache = {
        "fees": fees,
        "billing_periods": billing_periods,
        "applied_taxes": [
            InvoiceAppliedTax(invoice=invoice, tax_code=line.code, tax_name=line.name, tax_rate=line.rate,
                              base_amount_cents=line.base_amount_cents, amount_cents=line.tax_amount_cents)
            for line in totals.tax_lines
        ],
        "credit_applications": [],
        "coupon_credits": credits,
    }
    return invoice


@dataclass(frozen=True)
class CouponIn:
    """A coupon named in a preview request (Lago's `coupons[]`), for a customer with none applied."""

    code: str
    name: str = ""
    coupon_type: str = "fixed_amount"
    amount_cents: int | None = None
    amount_currency: str = ""
    percentage_rate: Decimal | None = None
    frequency: str = "once"
    frequency_duration: int | None = None


def preview_coupons(*, customer: Customer, service, requested: list[CouponIn]) -> list[tuple[AppliedCoupon, CouponState]]:
    """The coupons a preview takes off, as Lago picks them: the customer's active applied coupons, or, when it has
    none, those the request names (the service's coupon of that code, else the request's own terms)."""
    rows, states = applied_coupon_states(customer)
    if rows:
        return list(zip(rows, states))
    out = []
    for index, item in enumerate(requested):
        coupon = Coupon.objects.filter(service=service, code=item.code).prefetch_related("plans", "billable_metrics").first()
        if coupon is None:
            coupon = Coupon(service=service, code=item.code, name=item.name or item.code, coupon_type=item.coupon_type,
                            amount_cents=item.amount_cents, amount_currency=item.amount_currency or "",
                            percentage_rate=item.percentage_rate, frequency=item.frequency,
                            frequency_duration=item.frequency_duration)
        fixed = coupon.coupon_type == Coupon.CouponType.FIXED_AMOUNT
        row = AppliedCoupon(coupon=coupon, customer=customer, amount_cents=coupon.amount_cents if fixed else None,
                            amount_currency=coupon.amount_currency if fixed else "",
                            amount_cents_remaining=coupon.amount_cents if fixed else None,
                            percentage_rate=None if fixed else coupon.percentage_rate, frequency=coupon.frequency,
                            frequency_duration=coupon.frequency_duration,
                            frequency_duration_remaining=coupon.frequency_duration)
        saved = coupon.pk is not None
        out.append((row, CouponState(
            applied_coupon_id=-(index + 1),  # not a row: the allocation only needs distinct ids
            service_id=service.pk, coupon_type=coupon.coupon_type, frequency=coupon.frequency,
            currency=row.amount_currency, amount_cents=row.amount_cents, amount_cents_remaining=row.amount_cents_remaining,
            percentage_rate=row.percentage_rate, frequency_duration_remaining=row.frequency_duration_remaining,
            plan_ids=frozenset(plan.pk for plan in coupon.plans.all()) if saved else frozenset(),
            metric_ids=frozenset(metric.pk for metric in coupon.billable_metrics.all()) if saved else frozenset(),
            order=(index,),
        )))
    return out


def customer_invoice_preview(*, customer: Customer, subscriptions: list[Subscription],
                             coupons: list[tuple[AppliedCoupon, CouponState]], at: datetime | None = None) -> Invoice:
    """Lago's POST /invoices/preview for running subscriptions: the next invoice they make together, unsaved.

    Refused as Lago refuses it (`validation_errors` on `base`): subscriptions in two currencies, or whose periods
    end on different days (they would not share an invoice).
    """
    at = at or timezone.now()
    if len({subscription.plan.amount_currency for subscription in subscriptions}) > 1:
        raise ValidationFailed("currencies differ", details={"base": ["subscription_currencies_does_not_match"]})
    if len({current_period_end(subscription, at=at).date() for subscription in subscriptions}) > 1:
        raise ValidationFailed("periods differ", details={"base": ["billing_periods_does_not_match"]})
    previews = invoice_preview(customer_id=customer.pk, at=at, subscription_ids=[s.pk for s in subscriptions])
    if not previews:
        raise NotFound("subscription")
    return preview_invoice(previews[0], customer=customer, coupons=coupons, now=at)
