"""compare.compare classifies every difference between a hub invoice and Lago's, to the cent."""
from __future__ import annotations

from decimal import Decimal

from apps.migration import compare
from apps.migration.compare import FeeLine, InvoiceSide


def side(*, hours="150", hours_cents=1250, base_cents=4900, tax=None, number="N-1", extra=()) -> InvoiceSide:
    fees = (FeeLine("sub-1", "subscription", "pro", Decimal(1), base_cents),
            FeeLine("sub-1", "charge", "hours", Decimal(hours), hours_cents), *extra)
    fees_cents = sum(fee.amount_cents for fee in fees)
    taxes = {Decimal("13"): tax if tax is not None else (fees_cents * 13 + 50) // 100}
    return InvoiceSide(number, "CAD", fees, taxes, fees_cents, sum(taxes.values()), fees_cents + sum(taxes.values()))


def kinds(found):
    return [(d.kind, d.item) for d in found]


def test_identical_invoices_have_no_difference():
    assert compare.compare(side(), side(number="LAGO-7")) == []


def test_units_differ_is_reported_once_per_fee_with_the_totals_it_moves():
    found = compare.compare(side(), side(hours="160", hours_cents=1300))
    assert kinds(found) == [("units_differ", "sub-1/charge:hours"), ("tax_differ", "tax 13%"),
                            ("total_differ", "fees_amount_cents"), ("total_differ", "taxes_amount_cents"),
                            ("total_differ", "total_amount_cents")]
    assert found[0].delta_cents == -50


def test_a_one_cent_price_difference_is_a_difference():
    found = compare.compare(side(), side(hours_cents=1251))
    assert kinds(found)[0] == ("price_differ", "sub-1/charge:hours")
    assert found[0].hub == "1250" and found[0].lago == "1251"


def test_tax_differs_alone_when_only_the_rounding_of_tax_differs():
    found = compare.compare(side(), side(tax=805))
    assert kinds(found) == [("tax_differ", "tax 13%"), ("total_differ", "taxes_amount_cents"),
                            ("total_differ", "total_amount_cents")]


def test_missing_invoices_and_fees_on_either_side():
    assert kinds(compare.compare(None, side())) == [("missing_in_hub", "invoice")]
    assert kinds(compare.compare(side(), None)) == [("missing_in_lago", "invoice")]
    storage = FeeLine("sub-1", "charge", "storage", Decimal(10), 250)
    found = compare.compare(side(extra=(storage,)), side())
    assert kinds(found)[0] == ("missing_in_lago", "sub-1/charge:storage")
    assert kinds(compare.compare(side(), side(extra=(storage,))))[0] == ("missing_in_hub", "sub-1/charge:storage")


def test_a_zero_fee_on_one_side_only_is_not_a_difference():
    zero = FeeLine("sub-1", "charge", "calls", Decimal(0), 0)
    assert compare.compare(side(extra=(zero,)), side()) == []


def test_pairing_matches_per_customer_day_and_currency():
    pairs = compare.pair({("a", 1, "CAD"): ["h1"], ("b", 1, "CAD"): ["h2"]}, {("a", 1, "CAD"): ["l1"], ("c", 1, "CAD"): ["l3"]})
    assert pairs == [(("a", 1, "CAD"), "h1", "l1"), (("b", 1, "CAD"), "h2", None), (("c", 1, "CAD"), None, "l3")]
