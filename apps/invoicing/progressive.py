"""Progressive billing (Lago's usage thresholds): an invoice as soon as a subscription's lifetime usage crosses one
of its plan's thresholds, for the period's usage so far.

Lago's rules (app/services/lifetime_usages/usage_thresholds/check_service.rb): lifetime usage is the external
historical usage plus the usage invoiced plus the current period's usage; a fixed threshold is passed once, when
lifetime usage reaches it; the recurring one (at most one) every time usage grows by its amount past the largest
fixed one. A progressive billing invoice bills each charge's usage of the period so far less what earlier
progressive invoices of the period billed of it; the period's own invoice (the close) bills the whole period less
all of them (`close.planning.progressive_deduct`). So each unit of usage is billed once.

Exactly once: the check runs under the customer's row lock (the close's), and the invoice's `close_key` names the
lifetime usage invoiced before it and the largest threshold it passed (Lago's idempotency key): two workers, or a
rerun, find the first one's invoice and pass nothing more.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.catalog.models import UsageThreshold
from apps.customers.models import Customer
from apps.subscriptions.models import Subscription
from apps.subscriptions.periods import local_date

from .close.planning import current_usage_lines
from .fees import ZERO, Line, customer_tax_rates, fee_values, invoice_recompute_totals
from .models import AppliedUsageThreshold, Fee, Invoice, InvoiceSubscription, LifetimeUsage
from .services import invoice_finalize
from .selectors import PROGRESSIVE_FEE_PATTERN, group_canon, progressive_billed

logger = logging.getLogger(__name__)

# Usage fees: charges and their minimum true-ups (Lago's `fees.charge`, true-ups included).
_USAGE_FEES_SQL = """
SELECT coalesce(sum(f.amount_cents) FILTER (WHERE f.fee_key NOT LIKE %(progressive)s OR f.from_datetime < %(p_from)s), 0),
       coalesce(sum(f.amount_cents) FILTER (WHERE f.fee_key LIKE %(progressive)s AND f.from_datetime >= %(p_from)s), 0)
  FROM invoicing_fee f
  JOIN invoicing_invoice i ON i.id = f.invoice_id
 WHERE f.subscription_id = ANY(%(ids)s) AND i.status <> 'voided'
   AND (f.fee_type = 'charge' OR (f.fee_type = 'commitment' AND f.charge_id IS NOT NULL))
"""


@dataclass
class LifetimeUsageState:
    """A subscription's lifetime usage now (minor units of its plan's currency)."""

    subscription: Subscription
    record: LifetimeUsage | None
    historical_cents: int  # external_historical_usage_amount_cents
    invoiced_cents: int  # usage invoiced before the current period (its progressive invoices excluded)
    progressive_cents: int  # usage the current period's progressive invoices billed
    current_cents: int  # the current period's usage so far, whole
    period_from: datetime
    period_to: datetime
    lines: list[Line]  # the current period's priced usage lines (invoiceable charges)

    @property
    def total_cents(self) -> int:
        return self.historical_cents + self.invoiced_cents + self.current_cents


def _lineage_ids(subscription: Subscription) -> list[int]:
    """The subscription and those it replaced on plan changes (same service, external id and start: Lago's lifetime
    usage follows the external id across plan changes)."""
    return list(
        Subscription.objects.filter(
            service_id=subscription.service_id, external_id=subscription.external_id,
            subscription_at=subscription.subscription_at,
        ).exclude(status=Subscription.Status.CANCELED).values_list("pk", flat=True)
    )


def lifetime_usage_state(subscription: Subscription, *, at: datetime | None = None) -> LifetimeUsageState:
    """Read a subscription's lifetime usage at `at` (now): the close's rating for the current period."""
    at = at or timezone.now()
    _, p_from, p_to, lines = current_usage_lines(subscription, at=at)
    lines = [line for line in lines if line.charge is not None and line.charge.invoiceable]
    record = LifetimeUsage.objects.filter(subscription=subscription).first()
    with connection.cursor() as cursor:
        cursor.execute(_USAGE_FEES_SQL, {"progressive": PROGRESSIVE_FEE_PATTERN, "p_from": p_from,
                                         "ids": _lineage_ids(subscription)})
        invoiced, progressive = cursor.fetchone()
    return LifetimeUsageState(
        subscription=subscription, record=record,
        historical_cents=record.external_historical_usage_amount_cents if record else 0,
        invoiced_cents=int(invoiced), progressive_cents=int(progressive),
        current_cents=sum(line.amount_cents for line in lines),
        period_from=p_from, period_to=p_to, lines=lines,
    )


def thresholds_passed(
    thresholds: list[UsageThreshold], *, invoiced_cents: int, current_cents: int
) -> list[UsageThreshold]:
    """Lago's check: the thresholds passed since the last invoice. `invoiced_cents`: lifetime usage billed so far
    (historical, invoiced, this period's progressive invoices); `current_cents`: this period's usage not billed yet."""
    if current_cents < 0:
        return []
    fixed = sorted((t for t in thresholds if not t.recurring), key=lambda t: t.amount_cents)
    recurring = next((t for t in thresholds if t.recurring), None)
    largest = fixed[-1].amount_cents if fixed else 0
    total = invoiced_cents + current_cents
    passed: list[UsageThreshold] = []
    if invoiced_cents < largest:
        passed += [t for t in fixed if invoiced_cents < t.amount_cents <= total]
        if recurring is not None and total - largest >= recurring.amount_cents:
            passed.append(recurring)
    elif recurring is not None:
        remainder = invoiced_cents % recurring.amount_cents
        if current_cents + remainder >= recurring.amount_cents:
            passed.append(recurring)
    return passed


@transaction.atomic
def progressive_billing_check(*, subscription_id: int, at: datetime | None = None) -> Invoice | None:
    """Issue a progressive billing invoice if the subscription's usage passed a threshold; return it (or None).

    Safe to run twice, late or concurrently: under the customer's lock, and keyed by what it bills (module doc).
    """
    at = at or timezone.now()
    subscription = Subscription.objects.select_related("plan", "service", "customer").get(pk=subscription_id)
    if subscription.status != Subscription.Status.ACTIVE:
        return None
    thresholds = list(UsageThreshold.objects.filter(plan_id=subscription.plan_id))
    if not thresholds:
        return None
    customer = Customer.objects.select_for_update().get(pk=subscription.customer_id)
    subscription.customer = customer
    state = lifetime_usage_state(subscription, at=at)
    billed_so_far = state.historical_cents + state.invoiced_cents + state.progressive_cents
    passed = thresholds_passed(
        thresholds, invoiced_cents=billed_so_far, current_cents=state.current_cents - state.progressive_cents
    )
    if not passed:
        return None
    key = f"progressive:{subscription.pk}:{billed_so_far}:{max(t.amount_cents for t in passed)}"
    if Invoice.objects.filter(close_key=key).exists():
        return None
    deducted = progressive_billed([(subscription.pk, state.period_from, state.period_to)])
    today = local_date(at, customer.applicable_timezone)
    rates = customer_tax_rates(customer, on=today)
    currency = subscription.plan.amount_currency
    rows: list[Fee] = []
    invoice = Invoice(
        customer=customer, invoice_type=Invoice.InvoiceType.PROGRESSIVE_BILLING, currency=currency,
        issuing_date=today, net_payment_term=customer.net_payment_term, close_key=key,
    )
    for line in state.lines:
        filter_id = line.charge_filter.pk if line.charge_filter is not None else None
        group = group_canon(line.grouped_by or {})
        cents, precise = deducted.get((subscription.pk, line.charge.pk, filter_id, group, state.period_from),
                                      (0, ZERO))
        if line.amount_cents - cents == 0:
            continue
        # One fee per charge, filter and pricing group (Lago's fee per filter and group), as the period's invoice has.
        part = f"{line.charge.pk}:filter:{filter_id}" if filter_id is not None else f"{line.charge.pk}"
        if line.grouped_by is not None:
            part += ":group:" + line.fee_key.partition(":group:")[2]
        line.fee_key = f"sub:{subscription.pk}:progressive:{part}:{key.rsplit(':', 2)[1]}"
        line.amount_cents -= cents
        line.precise_amount -= precise
        line.from_datetime, line.to_datetime = line.window.start, at
        line.billing_on = today
        line.amount_details = {**line.amount_details, "progressive_billed_amount_cents": cents,
                               "usage_amount_cents": line.amount_cents + cents}
        rows.append(Fee(**fee_values(line, rates=rates)))
    if sum(row.amount_cents for row in rows) <= 0:
        return None
    try:
        with transaction.atomic():
            invoice.save()
    except IntegrityError:  # the same crossing billed by a worker this lock did not serialize (another path)
        return None
    for row in rows:
        row.invoice = invoice
    Fee.objects.bulk_create(rows)
    InvoiceSubscription.objects.create(
        invoice=invoice, subscription=subscription, from_datetime=state.period_from, to_datetime=state.period_to,
        charges_from_datetime=max(state.period_from, subscription.started_at or subscription.subscription_at),
        charges_to_datetime=at, invoicing_reason="progressive_billing",
    )
    invoice_recompute_totals(invoice)
    AppliedUsageThreshold.objects.bulk_create(
        AppliedUsageThreshold(
            invoice=invoice, usage_threshold=threshold, threshold_lago_id=threshold.lago_id,
            amount_cents=threshold.amount_cents, recurring=threshold.recurring,
            threshold_display_name=threshold.threshold_display_name,
            lifetime_usage_amount_cents=state.total_cents,
        )
        for threshold in passed
    )
    invoice = invoice_finalize(invoice_id=invoice.pk, now=at)
    _threshold_reached_record(subscription, passed)
    return invoice


def _threshold_reached_record(subscription: Subscription, passed: list[UsageThreshold]) -> None:
    """Lago's `subscription.usage_threshold_reached` webhook, one per threshold passed, in this transaction."""
    from apps.catalog.representations import usage_threshold_out
    from apps.subscriptions.representations import subscription_out
    from apps.webhooks.services import webhook_event_record

    for threshold in passed:
        body = {**subscription_out(subscription), "usage_threshold": usage_threshold_out(threshold)}
        webhook_event_record(event_type="subscription.usage_threshold_reached", object_type="subscription",
                             payload_object=body, service_ids=[subscription.service_id])


def lifetime_usage_ensure(*, subscription: Subscription) -> LifetimeUsage:
    """The subscription's lifetime usage row, created on first use (Lago creates it with the subscription)."""
    record, _ = LifetimeUsage.objects.get_or_create(subscription=subscription)
    return record


def lifetime_usage_update(*, subscription: Subscription, external_historical_usage_amount_cents: int) -> LifetimeUsage:
    """Set the usage a subscription had before the hub (Lago's PUT lifetime_usage)."""
    record, _ = LifetimeUsage.objects.update_or_create(
        subscription=subscription,
        defaults={"external_historical_usage_amount_cents": external_historical_usage_amount_cents},
    )
    return record
