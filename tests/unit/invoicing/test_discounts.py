"""Coupon arithmetic (apps/invoicing/discounts.py) against Lago's own scenario figures."""
from __future__ import annotations

from decimal import Decimal

import pytest

from apps.catalog.taxes import TaxRate
from apps.invoicing.discounts import CouponState, FeeBase, coupons_allocate, spread
from apps.invoicing.fees import fee_taxes

SERVICE = 1


def _coupon(pk, *, type_="fixed_amount", frequency="once", amount=None, rate=None, duration=None, plans=(),
            metrics=(), currency="EUR", service=SERVICE):
    return CouponState(
        applied_coupon_id=pk, service_id=service, coupon_type=type_, frequency=frequency,
        currency=currency if type_ == "fixed_amount" else "", amount_cents=amount,
        amount_cents_remaining=amount if (type_ == "fixed_amount" and frequency == "once") else None,
        percentage_rate=Decimal(rate) if rate is not None else None, frequency_duration_remaining=duration,
        plan_ids=frozenset(plans), metric_ids=frozenset(metrics), order=(pk,),
    )


def test_lago_s_coupons_breakdown_scenario():
    """lago-api spec/scenarios/coupons_breakdown_spec.rb, "multiple subscriptions and coupons of different kinds":
    two plans of four 1 EUR/unit charges (10, 20, 30, 40 units each), taxes 10 % and 20 % per charge; a 20 EUR
    coupon limited to metrics bm1+bm2, a 10 EUR coupon limited to plan 2, a 5 EUR coupon on everything, applied in
    that order (given here in reverse, to check the ordering). Lago: coupons 3,500, subtotal 16,500, per-fee taxes
    32/129/291/388 and 87/349/262/349."""
    fees = [FeeBase(fee_id=i, service_id=SERVICE, plan_id=1 if i <= 4 else 2, metric_id=i,
                    amount_cents=1000 * (1 + (i - 1) % 4)) for i in range(1, 9)]
    coupons = [_coupon(3, amount=500), _coupon(2, amount=1000, plans={2}), _coupon(1, amount=2000, metrics={1, 2})]
    uses = coupons_allocate(currency="EUR", fees=fees, coupons=coupons)

    assert [(use.applied_coupon_id, use.amount_cents) for use in uses] == [(1, 2000), (2, 1000), (3, 500)]
    per_fee = {fee.fee_id: sum(use.shares.get(fee.fee_id, 0) for use in uses) for fee in fees}
    # Lago's precise_coupons_amount_cents: 676.47059, 1352.94117, 88.23529, 117.64706, 126.47059, 252.94118,
    # 379.41176, 505.88235; the hub spreads each coupon in whole cents (the first coupon's 666.67/1333.33 -> 667/1333).
    assert per_fee == {1: 677, 2: 1353, 3: 88, 4: 118, 5: 126, 6: 253, 7: 379, 8: 506}
    assert sum(per_fee.values()) == 3500
    assert sum(fee.amount_cents for fee in fees) - sum(per_fee.values()) == 16500

    ten, twenty = TaxRate("r10", "Banking rates 1", Decimal(10)), TaxRate("r20", "Banking rates 2", Decimal(20))
    rates = {1: ten, 2: twenty, 3: ten, 4: ten, 5: ten, 6: twenty, 7: ten, 8: ten}
    taxes = [fee_taxes(fee.amount_cents - per_fee[fee.fee_id], [rates[fee.fee_id]])[0] for fee in fees]
    assert taxes == [32, 129, 291, 388, 87, 349, 262, 349]  # Lago's per-fee taxes_amount_cents, each one
    # Lago's invoice tax is 1,889 (each tax rounded once over the invoice); the hub sums the lines' rounded taxes,
    # as Odoo's round_per_line does, so the ledger agrees to the cent.
    assert sum(taxes) == 1887
    assert all(coupon.terminated for coupon in coupons)  # fixed once coupons fully used


def test_percentage_then_fixed_oldest_first_never_below_zero():
    fees = [FeeBase(fee_id=1, service_id=SERVICE, plan_id=1, metric_id=None, amount_cents=10000)]
    percent = _coupon(1, type_="percentage", frequency="forever", rate="10")
    fixed = _coupon(2, amount=50000)
    uses = coupons_allocate(currency="EUR", fees=fees, coupons=[fixed, percent])
    assert [(u.applied_coupon_id, u.amount_cents) for u in uses] == [(1, 1000), (2, 9000)]
    assert fixed.amount_cents_remaining == 41000 and not fixed.terminated  # carried to the next invoices
    assert not percent.terminated  # forever


def test_recurring_counts_periods_and_loses_what_an_invoice_could_not_take():
    coupon = _coupon(1, frequency="recurring", amount=3000, duration=2)
    for expected, left in ((2500, 1), (3000, 0)):
        fees = [FeeBase(fee_id=1, service_id=SERVICE, plan_id=1, metric_id=None,
                        amount_cents=2500 if left else 9000)]
        (use,) = coupons_allocate(currency="EUR", fees=fees, coupons=[coupon])
        assert use.amount_cents == expected and coupon.frequency_duration_remaining == left
    assert coupon.terminated


def test_other_currency_other_service_and_unmatched_limits_are_skipped():
    fees = [FeeBase(fee_id=1, service_id=SERVICE, plan_id=1, metric_id=7, amount_cents=1000),
            FeeBase(fee_id=2, service_id=2, plan_id=9, metric_id=None, amount_cents=5000)]
    coupons = [_coupon(1, amount=100, currency="CAD"), _coupon(2, amount=100, plans={3}),
               _coupon(3, type_="percentage", frequency="once", rate="50")]
    uses = coupons_allocate(currency="EUR", fees=fees, coupons=coupons)
    assert [(u.applied_coupon_id, u.amount_cents, u.shares) for u in uses] == [(3, 500, {1: 500})]
    assert [c.terminated for c in coupons] == [False, False, True]


def test_percentage_rounds_half_up_and_spread_adds_up():
    fees = [FeeBase(fee_id=i, service_id=SERVICE, plan_id=1, metric_id=None, amount_cents=c)
            for i, c in ((1, 333), (2, 333), (3, 333))]
    (use,) = coupons_allocate(currency="EUR", fees=fees, coupons=[_coupon(1, type_="percentage", rate="12.5")])
    assert use.amount_cents == 125  # 999 x 12.5 % = 124.875
    assert use.shares == {1: 42, 2: 42, 3: 41} and sum(use.shares.values()) == 125


@pytest.mark.parametrize("amount, bases", [(2, [(1, 1), (2, 1), (3, 1)]), (100, [(1, 100)]), (0, [(1, 5)])])
def test_spread_never_exceeds_a_base(amount, bases):
    shares = spread(amount, bases)
    assert sum(shares.values()) == amount
    assert all(shares.get(key, 0) <= base for key, base in bases)
    with pytest.raises(ValueError):
        spread(sum(base for _, base in bases) + 1, bases)
