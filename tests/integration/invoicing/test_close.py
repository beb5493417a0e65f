"""Period close: exact amounts, grouping per customer/day/currency, Canadian tax, exactly once."""
from __future__ import annotations

from decimal import Decimal

import pytest
import time_machine

from apps.invoicing.close import periods_close
from apps.invoicing.models import CloseRun, CloseRunCustomer, Fee, Invoice
from apps.invoicing.services import invoice_finalize
from apps.subscriptions.services import subscription_activate_due

from .conftest import at, fake_usage

pytestmark = pytest.mark.django_db


def test_monthly_arrears_plan_with_usage_is_billed_once_with_hst(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    plan = billing.plan(charges=[(metric, "standard", {"amount": "0.125"}, {})])
    billing.customer()
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    usage = fake_usage({(sub.pk, metric.pk): ("101", 7)})

    run = periods_close(as_of=at(2026, 4, 1, 0, 30), fetch=usage)

    invoice = Invoice.objects.get()
    assert run.invoices_count == 1 and run.status == CloseRun.Status.SUCCEEDED
    fees = {fee.fee_type: fee for fee in invoice.fees.all()}
    assert fees["subscription"].amount_cents == 9999
    # 101 × 0.125 = 12.625 -> 12.63 (half-up once per fee)
    assert fees["charge"].precise_amount == Decimal("12.625") and fees["charge"].amount_cents == 1263
    # HST 13% per line: 9999 × 0.13 = 1299.87 -> 1300; 1263 × 0.13 = 164.19 -> 164
    assert invoice.taxes_amount_cents == 1300 + 164
    assert invoice.total_amount_cents == 9999 + 1263 + 1464
    assert invoice.status == Invoice.Status.FINALIZED and invoice.number == "NEXA-2026-000001"
    assert str(invoice.issuing_date) == "2026-04-01"
    tax = invoice.applied_taxes.get()
    assert (tax.tax_code, tax.base_amount_cents, tax.amount_cents) == ("hst_sale_tax_13", 11262, 1464)

    again = periods_close(as_of=at(2026, 4, 1, 0, 30), fetch=usage)
    assert again.invoices_count == 0 and Fee.objects.count() == 2


def test_invoice_groups_subscriptions_of_two_services_per_day_and_currency(billing, service_factory, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 3
    other = type(billing)(service_factory("nexadesk", "NexaDesk").service)
    link = billing.customer("acme", province="QC")
    other_link = other.customer("acme-desk")
    # Make the desk link point at the same billing customer.
    other_link.customer = link.customer
    other_link.save()
    cloud = billing.subscribe("c1", billing.plan(amount_cents=1000), when=at(2026, 3, 1, 0, 0))
    desk_plan = other.plan("desk", amount_cents=2000)
    desk = other.subscribe("d1", desk_plan, customer="acme-desk", when=at(2026, 3, 1, 0, 0))
    usd = billing.subscribe("u1", billing.plan("usd", amount_cents=500, currency="USD"), when=at(2026, 3, 1, 0, 0))

    periods_close(as_of=at(2026, 4, 1, 1, 0))

    invoices = list(Invoice.objects.order_by("currency"))
    assert [(i.currency, i.status) for i in invoices] == [("CAD", "draft"), ("USD", "draft")]
    cad = invoices[0]
    assert {fee.service.code for fee in cad.fees.all()} == {"nexacloud", "nexadesk"}
    assert set(cad.billing_periods.values_list("subscription_id", flat=True)) == {cloud.pk, desk.pk}
    # QC: GST 5% + QST 9.975% per line: 1000 -> 50 + 99.75=100; 2000 -> 100 + 199.5=200
    assert {t.tax_code: t.amount_cents for t in cad.applied_taxes.all()} == {
        "gst_sale_tax_5": 150, "qst_sale_tax_9975": 300,
    }
    assert cad.total_amount_cents == 3450 and cad.number == ""
    assert invoices[1].billing_periods.get().subscription_id == usd.pk


def test_failing_customer_is_recorded_and_others_are_billed(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    billing.customer("bad", province="ZZ")  # unknown province: no tax row lists it
    billing.customer("good")
    plan = billing.plan()
    billing.subscribe("s-bad", plan, customer="bad", when=at(2026, 3, 1, 0, 0))
    billing.subscribe("s-good", plan, customer="good", when=at(2026, 3, 1, 0, 0))

    run = periods_close(as_of=at(2026, 4, 1, 1, 0))

    assert run.status == CloseRun.Status.PARTIAL and run.failures_count == 1
    failed = run.outcomes.get(outcome=CloseRunCustomer.Outcome.FAILED)
    assert "ZZ" in failed.error and failed.customer.external_id.endswith(":bad")
    assert Invoice.objects.get().customer.external_id.endswith(":good")
    assert not Fee.objects.filter(subscription__external_id="s-bad").exists()


def test_trial_days_are_free_and_minimum_is_trued_up(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    plan = billing.plan(
        amount_cents=3000, trial_period=10,
        charges=[(metric, "standard", {"amount": "1"}, {"min_amount_cents": 1000})],
    )
    billing.customer(country="US", province="")
    sub = billing.subscribe("s1", plan, when=at(2026, 4, 1, 0, 0))
    periods_close(as_of=at(2026, 5, 1, 1, 0), fetch=fake_usage({(sub.pk, metric.pk): ("2.5", 1)}))
    fees = {fee.fee_type: fee.amount_cents for fee in Fee.objects.all()}
    # April has 30 days, 10 in trial: 3000 × 20 / 30 = 2000; usage 2.50 lifted to the 10.00 minimum.
    assert fees == {"subscription": 2000, "charge": 250, "commitment": 750}
    assert Invoice.objects.get().taxes_amount_cents == 0  # outside Canada


def test_pending_downgrade_starts_at_period_end(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    big = billing.plan("big", amount_cents=5000, pay_in_advance=True)
    small = billing.plan("small", amount_cents=2000, pay_in_advance=True)
    billing.customer()
    old = billing.subscribe("s1", big, when=at(2026, 3, 1, 0, 0))
    new = billing.subscribe("s1", small, when=at(2026, 3, 10))
    with time_machine.travel(at(2026, 4, 1, 0, 5), tick=False):
        subscription_activate_due()
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    keys = dict(Fee.objects.values_list("fee_key", "amount_cents"))
    assert keys == {f"sub:{old.pk}:base:2026-03-01": 5000, f"sub:{new.pk}:base:2026-04-01": 2000}
    assert Invoice.objects.count() == 2
    assert periods_close(as_of=at(2026, 4, 1, 1, 0)).invoices_count == 0


def test_finalize_numbers_are_gapless_per_series(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 5
    plan = billing.plan()
    for name in ("a", "b", "c"):
        billing.customer(name)
        billing.subscribe(f"s-{name}", plan, customer=name, when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    numbers = [invoice_finalize(invoice_id=pk).number for pk in Invoice.objects.order_by("pk").values_list("pk", flat=True)]
    year = numbers[0].split("-")[1]
    assert numbers == [f"NEXA-{year}-00000{i}" for i in (1, 2, 3)]
