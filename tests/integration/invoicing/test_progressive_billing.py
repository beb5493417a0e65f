"""Progressive billing (Lago's usage thresholds) through ingest, the threshold check and the close.

Expected values from Lago's documentation ("Progressive billing"): step thresholds at $5, $20, $50, $100 and $1,000
of lifetime usage, each invoicing the usage so far less what was already invoiced; a recurring threshold invoicing
again every time usage grows by its amount past the last step; the period's invoice bills the rest only.
"""
from __future__ import annotations

from decimal import Decimal

import pytest
import time_machine

from apps.catalog.models import UsageThreshold
from apps.invoicing.close import periods_close
from apps.invoicing.models import Fee, Invoice
from apps.invoicing.progressive import lifetime_usage_state, progressive_billing_check, thresholds_passed
from apps.usage.models import UsageCheck
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn
from apps.webhooks.models import WebhookEvent

from .conftest import at

pytestmark = pytest.mark.django_db

STEPS = (500, 2000, 5000, 10000, 100000)  # Lago's documented $5, $20, $50, $100, $1,000


def _event(tx, when, gb):
    return EventIn(transaction_id=tx, external_subscription_id="s1", code="gb", timestamp=int(when.timestamp()),
                   properties={"gb": gb})


def _setup(billing, *, recurring=None):
    metric = billing.metric()
    plan = billing.plan(amount_cents=0, charges=[(metric, "standard", {"amount": "1"}, {})])
    for amount in STEPS:
        UsageThreshold.objects.create(plan=plan, amount_cents=amount)
    if recurring:
        UsageThreshold.objects.create(plan=plan, amount_cents=recurring, recurring=True)
    billing.customer()
    return billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))


def _ingest(billing, tx, when, gb):
    usage_events_ingest(service=billing.service, events=[_event(tx, when, gb)], now=when)


def _check(sub, when):
    with time_machine.travel(when, tick=False):
        return progressive_billing_check(subscription_id=sub.pk, at=when)


def _progressive():
    return list(Invoice.objects.filter(invoice_type="progressive_billing").order_by("id"))


def test_lago_steps_invoice_the_usage_so_far_less_what_was_invoiced_and_the_close_bills_the_rest(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    sub = _setup(billing)

    _ingest(billing, "t1", at(2026, 3, 5), "6")  # $6: past $5
    first = _check(sub, at(2026, 3, 5, 11))
    assert first.status == "finalized" and first.fees_amount_cents == 600
    _ingest(billing, "t2", at(2026, 3, 10), "10")  # $16: no new threshold
    assert _check(sub, at(2026, 3, 10, 11)) is None
    _ingest(billing, "t3", at(2026, 3, 12), "9")  # $25: past $20
    second = _check(sub, at(2026, 3, 12, 11))
    assert second.fees_amount_cents == 2500 - 600
    assert second.fees.get().amount_details["progressive_billed_amount_cents"] == 600
    _ingest(billing, "t4", at(2026, 3, 20), "5")  # $30 by the period end

    periods_close(as_of=at(2026, 4, 1, 0, 30))

    closing = Invoice.objects.get(invoice_type="subscription")
    charge = closing.fees.get(fee_type="charge")
    assert charge.amount_cents == 3000 - 2500 and charge.amount_details["progressive_billed_amount_cents"] == 2500
    billed = sum(Fee.objects.filter(fee_type="charge").values_list("amount_cents", flat=True))
    assert billed == 3000  # each dollar of usage billed once
    # HST per line on what each invoice bills: 600 -> 78, 1900 -> 247, 500 -> 65
    assert [i.taxes_amount_cents for i in (first, second, closing)] == [78, 247, 65]


def test_usage_that_falls_after_a_progressive_invoice_leaves_the_period_fee_at_zero_never_negative(billing, settings):
    """A sum metric whose events may be negative (a correction): $25 billed at the $20 threshold, then -$10, so the
    period ends at $15. The period's charge fee is zero, not -$10: nothing is refunded (Lago caps the progressive
    credit at the fee) and no finalized invoice or fee goes below zero."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    sub = _setup(billing)
    _ingest(billing, "t1", at(2026, 3, 5), "25")
    assert _check(sub, at(2026, 3, 5, 11)).fees_amount_cents == 2500
    _ingest(billing, "t2", at(2026, 3, 10), "-10")

    periods_close(as_of=at(2026, 4, 1, 0, 30))

    closing = Invoice.objects.get(invoice_type="subscription")
    charge = closing.fees.get(fee_type="charge")
    assert charge.amount_cents == 0 and charge.amount_details["progressive_billed_amount_cents"] == 1500
    assert closing.total_amount_cents == 0
    assert not Fee.objects.filter(amount_cents__lt=0).exists()


def test_checking_twice_issues_one_invoice_and_one_webhook_per_threshold(billing, settings):
    sub = _setup(billing)
    _ingest(billing, "t1", at(2026, 3, 5), "25")  # $25: past $5 and $20 at once
    assert _check(sub, at(2026, 3, 5, 11)).fees_amount_cents == 2500
    assert _check(sub, at(2026, 3, 5, 11)) is None
    assert len(_progressive()) == 1
    events = WebhookEvent.objects.filter(event_type="subscription.usage_threshold_reached")
    assert sorted(e.payload["subscription"]["usage_threshold"]["amount_cents"] for e in events) == [500, 2000]


def test_lifetime_usage_counts_earlier_periods_and_historical_usage(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    sub = _setup(billing)
    _ingest(billing, "t1", at(2026, 3, 5), "4")  # $4: under $5, billed by March's invoice
    assert _check(sub, at(2026, 3, 5, 11)) is None
    periods_close(as_of=at(2026, 4, 1, 0, 30))
    _ingest(billing, "t2", at(2026, 4, 2), "2")  # lifetime $6: past $5, April's $2 invoiced
    april = _check(sub, at(2026, 4, 2, 11))
    assert april.fees_amount_cents == 200

    state = lifetime_usage_state(sub, at=at(2026, 4, 2, 12))
    assert (state.invoiced_cents, state.current_cents, state.total_cents) == (400, 200, 600)


def test_lago_recurring_threshold_passes_every_amount_past_the_last_step():
    steps = [UsageThreshold(amount_cents=amount) for amount in STEPS]
    recurring = UsageThreshold(amount_cents=50000, recurring=True)
    every = [*steps, recurring]
    # Past the $1,000 step, every $500: at $1,500, $2,000...
    assert thresholds_passed(every, invoiced_cents=100000, current_cents=49999) == []
    assert thresholds_passed(every, invoiced_cents=100000, current_cents=50000) == [recurring]
    assert thresholds_passed(every, invoiced_cents=150000, current_cents=50000) == [recurring]
    # Crossing the last step and a recurring amount past it at once.
    assert thresholds_passed(every, invoiced_cents=90000, current_cents=60000) == [steps[-1], recurring]
    assert thresholds_passed(every, invoiced_cents=0, current_cents=2000) == steps[:2]


def test_ingest_asks_for_one_check_per_watched_subscription_and_the_task_bills(
    billing, settings, django_capture_on_commit_callbacks
):
    sub = _setup(billing)
    unwatched_plan = billing.plan("free", amount_cents=0)
    billing.subscribe("s2", unwatched_plan, when=at(2026, 3, 1, 0, 0))
    events = [_event(f"t{n}", at(2026, 3, 5), "3") for n in range(3)]
    events.append(EventIn(transaction_id="u1", external_subscription_id="s2", code="gb",
                          timestamp=int(at(2026, 3, 5).timestamp()), properties={"gb": "1"}))
    with time_machine.travel(at(2026, 3, 5, 11), tick=False):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            usage_events_ingest(service=billing.service, events=events, now=at(2026, 3, 5, 11))
        assert list(UsageCheck.objects.values_list("subscription_id", flat=True)) == [sub.pk]
        assert len(callbacks) == 1
        for callback in callbacks:
            callback()  # eager: the task runs the due check now
    assert UsageCheck.objects.count() == 0
    [invoice] = _progressive()
    assert invoice.fees_amount_cents == 900


def test_a_filtered_charge_is_billed_progressively_per_filter_and_each_unit_once(billing, settings):
    """Progressive billing on a charge with filters (Lago's fee per filter): the threshold invoice has one fee per
    filter, and the period's invoice takes off what each filter's fee already billed, not the charge's total from
    every filter's fee."""
    from apps.catalog.models import ChargeFilter

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric(filters=[{"key": "region", "values": ["eu", "us"]}])
    plan = billing.plan(amount_cents=0, charges=[(metric, "standard", {"amount": "1"}, {})])
    ChargeFilter.objects.create(charge=plan.charges.get(), values={"region": ["eu"]}, properties={"amount": "2"},
                                invoice_display_name="EU")
    UsageThreshold.objects.create(plan=plan, amount_cents=2000)
    billing.customer()
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))

    def event(tx, when, gb, region):
        usage_events_ingest(service=billing.service, now=when, events=[EventIn(
            transaction_id=tx, external_subscription_id="s1", code="gb", timestamp=int(when.timestamp()),
            properties={"gb": gb, "region": region})])

    event("t1", at(2026, 3, 5), "8", "eu")  # $16 at the EU price
    event("t2", at(2026, 3, 5, 12), "6", "us")  # $6 at the charge's own price: $22, past $20
    progressive = _check(sub, at(2026, 3, 5, 13))
    assert sorted(fee.amount_cents for fee in progressive.fees.all()) == [600, 1600]
    event("t3", at(2026, 3, 20), "1", "eu")  # $2 more in the EU
    event("t4", at(2026, 3, 21), "3", "us")  # $3 more elsewhere

    periods_close(as_of=at(2026, 4, 1, 0, 30))

    closing = Invoice.objects.get(invoice_type="subscription")
    by_filter = {(fee.charge_filter.invoice_display_name if fee.charge_filter else None): fee.amount_cents
                 for fee in closing.fees.filter(fee_type="charge")}
    assert by_filter == {"EU": 200, None: 300}
    billed = sum(Fee.objects.filter(fee_type="charge").values_list("amount_cents", flat=True))
    assert billed == 2700  # 9 GB EU at $2 + 9 GB elsewhere at $1, each billed once
