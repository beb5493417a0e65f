from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.catalog.taxes import ScheduledTax, TaxRate, TaxSchedule, invoice_totals, rate_percent, tax_lines
from tests.tax_rates import CANADA, GST_5, HST_13, PROVINCE_TAXES, QST_9975, TODAY


def taxes_for(country, province, *, on=TODAY):
    return CANADA.rates_for(country, province, on=on)


@pytest.mark.parametrize(
    ("province", "expected"),
    [
        ("ON", [("hst_sale_tax_13", "13")]),
        ("NB", [("hst_sale_tax_15", "15")]),
        ("NL", [("hst_sale_tax_15", "15")]),
        ("PE", [("hst_sale_tax_15", "15")]),
        ("NS", [("hst_sale_tax_14", "14")]),
        ("AB", [("gst_sale_tax_5", "5")]),
        ("NT", [("gst_sale_tax_5", "5")]),
        ("NU", [("gst_sale_tax_5", "5")]),
        ("YT", [("gst_sale_tax_5", "5")]),
        ("BC", [("gst_sale_tax_5", "5"), ("pst_sale_tax_7_bc", "7")]),
        ("MB", [("gst_sale_tax_5", "5"), ("pst_sale_tax_7_mb", "7")]),
        ("SK", [("gst_sale_tax_5", "5"), ("pst_sale_tax_6", "6")]),
        ("QC", [("gst_sale_tax_5", "5"), ("qst_sale_tax_9975", "9.975")]),
    ],
)
def test_canadian_rates_by_province(province, expected):
    assert [(tax.code, tax.rate) for tax in taxes_for("CA", province)] == [
        (code, Decimal(rate)) for code, rate in expected
    ]


def test_nova_scotia_was_15_percent_before_april_2025():
    assert taxes_for("CA", "NS", on=date(2025, 3, 31))[0].rate == Decimal("15")
    assert taxes_for("CA", "NS", on=date(2025, 4, 1))[0].rate == Decimal("14")


def test_outside_canada_is_untaxed_and_bad_codes_are_refused():
    assert taxes_for("US", "NY") == []
    assert taxes_for("FR", None) == []
    assert len(PROVINCE_TAXES) == 13
    with pytest.raises(ValueError, match="unknown province 'XX' of CA"):
        taxes_for("CA", "XX")
    with pytest.raises(ValueError, match="unknown province"):
        taxes_for("CA", None)
    with pytest.raises(ValueError):
        taxes_for("", "ON")


def test_odoo_worked_example_a_ontario():
    # research/odoo.md §5.5 example A: 43.21 + 49.99 + 7.70 at 13% HST.
    totals = invoice_totals([(4321, [HST_13]), (4999, [HST_13]), (770, [HST_13])])
    assert (totals.untaxed_amount_cents, totals.tax_amount_cents, totals.total_amount_cents) == (10090, 1312, 11402)
    assert totals.tax_lines[0].base_amount_cents == 10090


def test_odoo_worked_example_b_rounds_per_line_not_globally():
    # Five 0.10 lines each round 0.013 to 0.01; round_globally would give 6.56.
    totals = invoice_totals([(10, [HST_13])] * 5 + [(4999, [HST_13])])
    assert (totals.untaxed_amount_cents, totals.tax_amount_cents, totals.total_amount_cents) == (5049, 655, 5704)


def test_odoo_example_c_quebec_group_children_round_separately():
    lines = tax_lines([(10000, taxes_for("CA", "QC"))])
    assert [(line.code, line.tax_amount_cents) for line in lines] == [("gst_sale_tax_5", 500), ("qst_sale_tax_9975", 998)]
    assert invoice_totals([(10000, taxes_for("CA", "QC"))]).total_amount_cents == 11498
    bc = invoice_totals([(10000, taxes_for("CA", "BC"))])
    assert [line.tax_amount_cents for line in bc.tax_lines] == [500, 700]


def test_half_cent_rounds_up_and_negative_lines_round_away_from_zero():
    assert tax_lines([(50, [TaxRate("x", "1%", Decimal("1"))])])[0].tax_amount_cents == 1  # 0.5 -> 1
    assert tax_lines([(-50, [TaxRate("x", "1%", Decimal("1"))])])[0].tax_amount_cents == -1


def test_floats_are_refused():
    with pytest.raises(TypeError):
        TaxRate("x", "x", 13.0)
    with pytest.raises(TypeError):
        invoice_totals([(100.0, [HST_13])])


amounts = st.integers(min_value=0, max_value=10**9)
rate_sets = st.sampled_from([list(v) for v in PROVINCE_TAXES.values()] + [[]])
fee_lists = st.lists(st.tuples(amounts, rate_sets), max_size=15)


@settings(max_examples=150, deadline=None)
@given(fee_lists)
def test_invoice_totals_are_exact_integer_sums(fees):
    totals = invoice_totals(fees)
    assert totals.untaxed_amount_cents == sum(amount for amount, _ in fees)
    assert totals.tax_amount_cents == sum(line.tax_amount_cents for line in totals.tax_lines)
    assert totals.total_amount_cents == totals.untaxed_amount_cents + totals.tax_amount_cents


@settings(max_examples=150, deadline=None)
@given(fee_lists)
def test_tax_per_rate_is_the_sum_of_half_up_rounded_line_taxes(fees):
    expected: dict[str, int] = {}
    for amount, rates in fees:
        for rate in rates:
            # Independent rule: cents × rate% as an exact fraction, rounded half-up to a cent.
            line_tax = (Decimal(amount) * rate.rate / Decimal(100)).quantize(Decimal(1), ROUND_HALF_UP)
            expected[rate.code] = expected.get(rate.code, 0) + int(line_tax)
    assert {line.code: line.tax_amount_cents for line in tax_lines(fees)} == expected


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=10**7))
def test_quebec_qst_matches_integer_half_up(amount_cents):
    # 9.975% = 9975 / 100000; half-up on non-negative integers without Decimal.
    expected_qst = (amount_cents * 9975 * 2 + 100000) // 200000
    lines = {line.code: line.tax_amount_cents for line in tax_lines([(amount_cents, [GST_5, QST_9975])])}
    assert lines["qst_sale_tax_9975"] == expected_qst
    assert lines["gst_sale_tax_5"] == (amount_cents * 5 * 2 + 100) // 200


def test_a_dated_row_replaces_its_component_from_its_date_only_where_it_applies():
    hst_14_on = TaxRate("hst_sale_tax_14_on", "14% HST (ON)", Decimal("14"))
    schedule = TaxSchedule([
        ScheduledTax(HST_13, "hst", "CA", ("ON",), None),
        ScheduledTax(hst_14_on, "hst", "CA", ("ON",), date(2027, 7, 1)),
        ScheduledTax(GST_5, "gst", "CA", ("AB", "QC"), None),
        ScheduledTax(QST_9975, "qst", "CA", ("QC",), None),
    ])
    assert schedule.rates_for("CA", "ON", on=date(2027, 6, 30)) == [HST_13]
    assert schedule.rates_for("CA", "ON", on=date(2027, 7, 1)) == [hst_14_on]
    assert schedule.rates_for("CA", "QC", on=date(2027, 7, 1)) == [GST_5, QST_9975]  # GST first, as Odoo lists them
    assert schedule.rates_for("CA", "AB", on=date(2027, 7, 1)) == [GST_5]


def test_a_schedule_refuses_an_unknown_component():
    with pytest.raises(ValueError, match="component"):
        TaxSchedule([ScheduledTax(HST_13, "vat", "CA", ("ON",), None)])


@pytest.mark.parametrize(("stored", "written"), [("13.00000", "13"), ("9.97500", "9.975"), ("0.50000", "0.5")])
def test_stored_rates_are_written_without_trailing_zeros(stored, written):
    assert str(rate_percent(Decimal(stored))) == written
