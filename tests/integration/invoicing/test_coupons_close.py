"""Coupons at the close (issue 20): before tax, in Lago's order, then credit notes after tax; once per invoice
whether the close runs twice or two finalizations race; what is left carries over."""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from django.db import connection

from apps.catalog.models import AppliedCoupon
from apps.catalog.services import applied_coupon_create, coupon_create
from apps.integrity.invariants import check_all
from apps.invoicing.close import periods_close
from apps.invoicing.models import CouponCredit, Fee, Invoice
from apps.invoicing.representations import invoice_out
from apps.invoicing.services import invoice_finalize

from .conftest import at
from .test_credit_applied import credit, one_off

pytestmark = pytest.mark.django_db


def coupon(billing, code, **values):
    base = {"code": code, "name": code, "frequency": "once", "expiration": "no_expiration", "reusable": True}
    if "percentage_rate" in values:
        base["coupon_type"] = "percentage"
    else:
        base |= {"coupon_type": "fixed_amount", "amount_currency": "CAD"}
    return coupon_create(service=billing.service, values=base | values)


def apply(billing, link, code, **overrides) -> AppliedCoupon:
    return applied_coupon_create(service=billing.service, link=link, coupon_code=code, overrides=overrides)


def test_percentage_then_fixed_before_tax_then_credit_note_after_tax(billing, settings):
    """The README's worked example: a 100.00 CAD plan (Ontario, HST 13 %), a 10 % coupon applied after a 50.00
    one, and a credit note worth 20.00 of credit. Lago's order: coupons limited to plans or metrics first, then
    the others oldest first, so 50.00 comes off, then 10 % of the 50.00 left (5.00), all before tax; tax on 45.00;
    then the credit note on the total including tax."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    link = billing.customer()
    billing.subscribe("s1", billing.plan(amount_cents=10000), when=at(2026, 3, 1, 0, 0))
    note = credit(one_off(billing, link.customer, 2000), 1770)  # 1770 + 13 % = 2000 of credit
    coupon(billing, "fifty", amount_cents=5000)
    coupon(billing, "ten_percent", percentage_rate=Decimal(10), frequency="forever")
    with_plan_limit = coupon(billing, "pro_only", amount_cents=100, frequency="recurring", frequency_duration=2)
    with_plan_limit.plans.set([billing.service.plans.get(code="pro")])
    apply(billing, link, "fifty")
    apply(billing, link, "ten_percent")
    apply(billing, link, "pro_only")

    periods_close(as_of=at(2026, 4, 1, 2, 0))
    invoice = Invoice.objects.get(invoice_type="subscription")
    # pro_only (limited to the plan) first: 1.00; then fifty: 50.00; then 10 % of 49.00 = 4.90.
    assert [(c.applied_coupon.coupon.code, c.amount_cents) for c in invoice.coupon_credits.order_by("id")] == [
        ("pro_only", 100), ("fifty", 5000), ("ten_percent", 490)]
    assert (invoice.fees_amount_cents, invoice.coupons_amount_cents, invoice.sub_total_excluding_taxes_amount_cents,
            invoice.taxes_amount_cents, invoice.sub_total_including_taxes_amount_cents) == (
        10000, 5590, 4410, 573, 4983)
    assert (invoice.credit_notes_amount_cents, invoice.total_amount_cents) == (2000, 2983)
    fee = invoice.fees.get()
    assert (fee.amount_cents, fee.coupons_amount_cents, fee.taxes_amount_cents) == (10000, 5590, 573)
    note.refresh_from_db()
    assert note.balance_amount_cents == 0

    body = invoice_out(invoice, service=billing.service)
    assert body["coupons_amount_cents"] == 5590 and body["fees"][0]["precise_coupons_amount_cents"] == "5590"
    assert [(c["item"]["type"], c["item"]["code"], c["amount_cents"], c["before_taxes"]) for c in body["credits"]] == [
        ("coupon", "pro_only", 100, True), ("coupon", "fifty", 5000, True), ("coupon", "ten_percent", 490, True),
        ("credit_note", note.number, 2000, False)]
    states = {a.coupon.code: (a.status, a.amount_cents_remaining, a.frequency_duration_remaining)
              for a in AppliedCoupon.objects.select_related("coupon")}
    assert states == {"fifty": ("terminated", 0, None), "ten_percent": ("active", None, None),
                      "pro_only": ("active", None, 1)}
    assert check_all() == []  # I1-I6, I4 with the coupons


def test_remaining_amount_and_periods_carry_over_and_a_rerun_applies_nothing(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    link = billing.customer()
    billing.subscribe("s1", billing.plan(amount_cents=3000), when=at(2026, 3, 1, 0, 0))
    coupon(billing, "big", amount_cents=5000)  # once: 30.00, then the 20.00 left, then gone
    coupon(billing, "two_months", percentage_rate=Decimal(50), frequency="recurring", frequency_duration=2)
    apply(billing, link, "big")
    apply(billing, link, "two_months")

    expected = [(3000, 0), (2000, 500), (0, 1500)]  # (fixed coupon, 50 % of what is left) per month
    for month, (fixed, half) in zip((4, 5, 6), expected):
        for _ in range(2):  # the close running twice takes nothing more
            periods_close(as_of=at(2026, month, 1, 2, 0))
        invoice = Invoice.objects.get(issuing_date=datetime(2026, month, 1).date())
        taken = dict(invoice.coupon_credits.values_list("applied_coupon__coupon__code", "amount_cents"))
        assert (taken.get("big", 0), taken.get("two_months", 0)) == (fixed, half)
        assert invoice.coupons_amount_cents == fixed + half
    assert CouponCredit.objects.count() == 4
    big, two = AppliedCoupon.objects.order_by("id")
    assert (big.status, big.amount_cents_remaining) == ("terminated", 0)
    assert (two.status, two.frequency_duration_remaining) == ("terminated", 0)


def test_coupons_skip_one_off_invoices_and_other_services_fees(billing, service_factory, settings):
    from tests.integration.invoicing.conftest import Billing

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    link = billing.customer()
    desk = Billing(service_factory("nexadesk", "NexaDesk").service)
    desk.customer("acme-desk", email="")  # another service's view of a new customer...
    from apps.customers.models import AccountLink

    AccountLink.objects.filter(service=desk.service).update(customer=link.customer)  # ...linked to the same one
    billing.subscribe("s1", billing.plan(amount_cents=1000), when=at(2026, 3, 1, 0, 0))
    desk.subscribe("d1", desk.plan(code="desk", amount_cents=4000), customer="acme-desk", when=at(2026, 3, 1, 0, 0))
    coupon(billing, "all_of_it", percentage_rate=Decimal(100), frequency="forever")
    apply(billing, link, "all_of_it")
    assert one_off(billing, link.customer, 500).coupons_amount_cents == 0  # Lago: coupons skip one-off invoices

    periods_close(as_of=at(2026, 4, 1, 2, 0))
    invoice = Invoice.objects.get(invoice_type="subscription")
    assert (invoice.fees_amount_cents, invoice.coupons_amount_cents) == (5000, 1000)  # NexaDesk's 40.00 untouched
    assert invoice.taxes_amount_cents == 520  # 13 % of 40.00
    credit = invoice_out(invoice, service=desk.service)["credits"][0]
    other = credit["item"]
    # Lago's item id is never null: the other service's coupon is named by the credit itself, not by its own id
    assert (other["code"], other["lago_item_id"]) == ("other_services", credit["lago_id"])


@pytest.mark.django_db(transaction=True)
def test_two_invoices_finalizing_at_once_never_take_the_same_coupon_twice(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 1  # both invoices stay drafts until finalized below, at the same instant
    link = billing.customer()
    plan = billing.plan(amount_cents=5000)
    billing.subscribe("s1", plan, billing_time="anniversary", when=at(2026, 3, 3, 12, 0))
    billing.subscribe("s2", plan, billing_time="anniversary", when=at(2026, 3, 5, 12, 0))
    coupon(billing, "sixty", amount_cents=6000)
    apply(billing, link, "sixty")
    periods_close(as_of=datetime(2026, 4, 6, 12, 0, tzinfo=timezone.utc))
    drafts = list(Invoice.objects.filter(status="draft").values_list("pk", flat=True))
    assert len(drafts) == 2

    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def finalize(invoice_id: int) -> None:
        try:
            barrier.wait(timeout=10)
            invoice_finalize(invoice_id=invoice_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=finalize, args=(pk,)) for pk in drafts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    taken = sorted(Invoice.objects.filter(pk__in=drafts).values_list("coupons_amount_cents", flat=True))
    assert taken == [1000, 5000]  # one took 50.00, the other the 10.00 left
    applied = AppliedCoupon.objects.get()
    assert (applied.amount_cents_remaining, applied.status) == (0, "terminated")
    assert sum(CouponCredit.objects.values_list("amount_cents", flat=True)) == 6000
    assert sum(Fee.objects.values_list("coupons_amount_cents", flat=True)) == 6000
