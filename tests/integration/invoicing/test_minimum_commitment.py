"""Plan minimum commitment (Lago's `minimum_commitment`): a true-up fee for the period's shortfall, through the close.

Expected values from Lago's documentation ("Negotiated contract billing": a $1,000 monthly minimum, $800 of usage
gives a $200 true-up, $1,300 of usage none; "Commitments": the subscription fee and all usage fees count, prorated
by the days of a partial period, billed at the period end, with the next period's fee for an in-advance plan).
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from apps.catalog.models import Commitment
from apps.invoicing.close import periods_close
from apps.invoicing.close.preview import invoice_preview
from apps.invoicing.models import Fee, Invoice

from .conftest import at, fake_usage

pytestmark = pytest.mark.django_db


def _commit(plan, amount_cents, name=""):
    return Commitment.objects.create(plan=plan, amount_cents=amount_cents, invoice_display_name=name)


def _true_up(invoice):
    return [fee for fee in invoice.fees.all() if fee.fee_type == "commitment" and fee.charge_id is None]


def test_lago_example_800_of_usage_under_a_1000_minimum_is_trued_up_by_200(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    plan = billing.plan(amount_cents=0, charges=[(metric, "standard", {"amount": "1"}, {})])
    _commit(plan, 100000, "Monthly minimum")
    billing.customer()
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))

    periods_close(as_of=at(2026, 4, 1, 0, 30), fetch=fake_usage({(sub.pk, metric.pk): ("800", 8)}))

    invoice = Invoice.objects.get()
    [true_up] = _true_up(invoice)
    assert true_up.amount_cents == 20000 and true_up.precise_amount == Decimal("200")
    assert true_up.name == "NexaCloud · Monthly minimum"
    assert invoice.fees_amount_cents == 100000
    # HST 13% on each line: 80000 -> 10400, 20000 -> 2600
    assert invoice.taxes_amount_cents == 13000

    # Rerun: nothing more (the fee key is billed).
    periods_close(as_of=at(2026, 4, 1, 0, 30), fetch=fake_usage({(sub.pk, metric.pk): ("800", 8)}))
    assert Fee.objects.filter(fee_type="commitment").count() == 1


def test_lago_example_1300_of_usage_over_the_minimum_has_no_true_up(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    plan = billing.plan(amount_cents=0, charges=[(metric, "standard", {"amount": "1"}, {})])
    _commit(plan, 100000)
    billing.customer()
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))

    periods_close(as_of=at(2026, 4, 1, 0, 30), fetch=fake_usage({(sub.pk, metric.pk): ("1300", 13)}))

    invoice = Invoice.objects.get()
    assert _true_up(invoice) == [] and invoice.fees_amount_cents == 130000


def test_the_base_fee_and_charge_minimums_count_towards_the_commitment(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    plan = billing.plan(amount_cents=9999, charges=[(metric, "standard", {"amount": "1"}, {"min_amount_cents": 3000})])
    _commit(plan, 20000)
    billing.customer()
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))

    periods_close(as_of=at(2026, 4, 1, 0, 30), fetch=fake_usage({(sub.pk, metric.pk): ("10", 1)}))

    invoice = Invoice.objects.get()
    # base 99.99 + usage 10.00 + the charge's minimum true-up 20.00 = 129.99; commitment 200.00 -> 70.01
    [true_up] = _true_up(invoice)
    assert true_up.amount_cents == 7001
    assert invoice.fees_amount_cents == 20000


def test_a_partial_first_period_prorates_the_commitment_by_active_days(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    plan = billing.plan(amount_cents=0)
    _commit(plan, 100000)
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 17, 9, 0))

    periods_close(as_of=at(2026, 4, 1, 0, 30))

    # 15 of March's 31 days: 1000.00 × 15 / 31 = 483.870967... -> 483.87
    [true_up] = _true_up(Invoice.objects.get())
    assert true_up.amount_cents == 48387
    assert true_up.amount_details["days"] == 15 and true_up.amount_details["period_days"] == 31


def test_an_in_advance_plan_trues_up_the_past_period_on_the_next_invoice(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    plan = billing.plan(amount_cents=10000, pay_in_advance=True, charges=[(metric, "standard", {"amount": "1"}, {})])
    _commit(plan, 30000)
    billing.customer()
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    usage = fake_usage({(sub.pk, metric.pk): ("50", 5)})

    periods_close(as_of=at(2026, 3, 1, 0, 30), fetch=usage)
    first = Invoice.objects.get()
    assert _true_up(first) == [] and first.fees_amount_cents == 10000  # Lago: no true-up on the first invoice

    periods_close(as_of=at(2026, 4, 1, 0, 30), fetch=usage)
    second = Invoice.objects.exclude(pk=first.pk).get()
    # March: base 100.00 (billed on March 1st) + usage 50.00 = 150.00 of a 300.00 commitment -> 150.00
    [true_up] = _true_up(second)
    assert true_up.amount_cents == 15000 and str(true_up.from_datetime.date()) == "2026-03-01"
    assert second.fees_amount_cents == 10000 + 5000 + 15000


def test_invoice_preview_shows_the_true_up_the_close_will_bill(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    plan = billing.plan(amount_cents=2500)
    _commit(plan, 10000)
    link = billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))

    [preview] = invoice_preview(customer_id=link.customer_id, at=at(2026, 3, 20))
    assert sorted(line.amount_cents for line in preview.lines) == [2500, 7500]


def test_a_termination_prorates_the_commitment_to_the_days_used(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    plan = billing.plan(amount_cents=0)
    _commit(plan, 31000)
    billing.customer()
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    billing.terminate(sub, when=at(2026, 3, 10, 15, 0))  # the 10th counts as used (Lago): 10 of 31 days

    periods_close(as_of=at(2026, 3, 11, 0, 30))

    [true_up] = _true_up(Invoice.objects.get())
    assert true_up.amount_cents == 10000 and str(true_up.invoice.issuing_date) == "2026-03-10"
