from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.subscriptions.periods import Period
from apps.invoicing.rating import (
    base_fee_for_period, charge_minimum_true_up, charge_pricing, price_charge, price_charge_with, validate_properties,
)

D = Decimal


def price(model: str, props: dict, units: str, events: int = 1, per_event=None, currency: str = "CAD"):
    """Price through both entry points (properties parsed per call, and parsed once as the close does):
    every example below checks that they agree."""
    amounts = [D(v) for v in per_event] if per_event is not None else None
    result = price_charge(
        charge_model=model, properties=props, units=D(units), events_count=events, currency=currency,
        per_event_amounts=amounts,
    )
    pricing = charge_pricing(model, props)
    for _ in range(2):  # a parsed charge prices many periods: the first use must not change the second
        assert price_charge_with(
            pricing, units=D(units), events_count=events, currency=currency, per_event_amounts=amounts
        ) == result
    return result


def tiers(*rows):
    return [
        {"from_value": f, "to_value": t, "per_unit_amount": p, "flat_amount": fl} for f, t, p, fl in rows
    ]


CLASSIC = tiers((0, 100, "0.10", "0"), (101, 200, "0.08", "1"), (201, None, "0.05", "2"))
ADJACENT = tiers((0, 100, "0.10", "0"), (100, 200, "0.08", "1"), (200, None, "0.05", "2"))


def test_standard_rounds_once_per_fee():
    result = price("standard", {"amount": "0.0035"}, "12345")
    assert (result.precise_amount, result.amount_cents) == (D("43.2075"), 4321)
    assert price("standard", {"amount": "5"}, "3", currency="JPY").amount_cents == 15


@pytest.mark.parametrize("ranges", [CLASSIC, ADJACENT], ids=["classic", "adjacent"])
@pytest.mark.parametrize(
    ("units", "cents"),
    [
        ("0", 0),
        ("100", 1000),  # 100 × 0.10; tier 2 not entered, no flat
        ("101", 1108),  # 10 + 1 × 0.08 + 1 flat
        ("100.5", 1104),  # 10 + 0.5 × 0.08 + 1
        ("250", 2350),  # 10 + (100 × 0.08 + 1) + (50 × 0.05 + 2)
    ],
)
def test_graduated_prices_each_tier_separately(ranges, units, cents):
    assert price("graduated", {"graduated_ranges": ranges}, units).amount_cents == cents


def test_graduated_details_show_tier_units():
    details = price("graduated", {"graduated_ranges": CLASSIC}, "250").details["graduated_ranges"]
    assert [(tier["units"], tier["amount"]) for tier in details] == [
        (D("100"), D("10.00")), (D("100"), D("9.00")), (D("50"), D("4.50"))
    ]


VOLUME = tiers((0, 100, "0.10", "1"), (101, None, "0.05", "0"))


@pytest.mark.parametrize(
    ("units", "cents"),
    [("0", 100), ("100", 1100), ("100.5", 503), ("101", 505), ("1000", 5000)],
)
def test_volume_prices_all_units_at_the_reached_tier(units, cents):
    # 0 units still bills the first tier's flat amount, as Lago's volume_service does.
    assert price("volume", {"volume_ranges": VOLUME}, units).amount_cents == cents


@pytest.mark.parametrize(
    ("units", "cents"), [("0", 0), ("10", 0), ("11", 500), ("110", 500), ("111", 1000), ("250", 1500)]
)
def test_package_rounds_up_to_whole_packages_after_free_units(units, cents):
    props = {"amount": "5", "package_size": 100, "free_units": 10}
    assert price("package", props, units).amount_cents == cents


def test_percentage_with_fixed_fee_per_event():
    # 1.5% of 1000 + 4 events × 0.10
    result = price("percentage", {"rate": "1.5", "fixed_amount": "0.10"}, "1000", events=4)
    assert (result.precise_amount, result.amount_cents) == (D("15.40"), 1540)
    assert price("percentage", {"rate": "1.5", "fixed_amount": "0.10"}, "0", events=0).amount_cents == 0


def test_percentage_free_units_per_events():
    # First 2 events (100 + 200) free: 700 × 1.5% + 2 paid events × 0.10 = 10.70
    props = {"rate": "1.5", "fixed_amount": "0.10", "free_units_per_events": 2}
    assert price("percentage", props, "1000", 4, ["100", "200", "300", "400"]).amount_cents == 1070


def test_percentage_free_units_whichever_allowance_runs_out_first():
    # Free amount 250 is reached before 2 events: 750 × 1.5% = 11.25; one event wholly free, 3 × 0.10.
    props = {"rate": "1.5", "fixed_amount": "0.10", "free_units_per_events": 2, "free_units_per_total_aggregation": "250"}
    result = price("percentage", props, "1000", 4, ["100", "200", "300", "400"])
    assert (result.precise_amount, result.amount_cents) == (D("11.55"), 1155)
    # Without per-event data the free-event rules cannot be applied.
    with pytest.raises(ValueError):
        price("percentage", props, "1000", 4)


def test_percentage_free_total_alone_needs_no_event_detail():
    assert price("percentage", {"rate": "2", "free_units_per_total_aggregation": "250"}, "1000", 4).amount_cents == 1500


def test_percentage_per_transaction_min_and_max():
    props = {"rate": "1", "fixed_amount": "0.10", "per_transaction_min_amount": "1", "per_transaction_max_amount": "3"}
    # 0.60 -> 1.00 (min), 2.10, 5.10 -> 3.00 (max)
    assert price("percentage", props, "750", 3, ["50", "200", "500"]).amount_cents == 610
    # The first event is free (no fixed fee, no minimum either).
    assert price("percentage", dict(props, free_units_per_events=1), "750", 3, ["50", "200", "500"]).amount_cents == 510
    # 100 free units: event 1 free, event 2 pays on 150 -> 1.60, event 3 -> 3.00.
    free_total = dict(props, free_units_per_total_aggregation="100")
    assert price("percentage", free_total, "750", 3, ["50", "200", "500"]).amount_cents == 460


def test_charge_minimum_true_up():
    true_up = charge_minimum_true_up(
        min_amount_cents=5000, charge_amount_cents=1234, charge_precise_amount=D("12.3449"), currency="CAD"
    )
    assert (true_up.precise_amount, true_up.amount_cents) == (D("37.6551"), 3766)
    above = charge_minimum_true_up(
        min_amount_cents=5000, charge_amount_cents=6000, charge_precise_amount=D("60"), currency="CAD"
    )
    assert (above.precise_amount, above.amount_cents) == (D(0), 0)


def test_charge_minimum_is_prorated_by_active_days():
    # 50.00 × 15/29 = 25.862… -> 2586 cents; the charge made 10.00.
    true_up = charge_minimum_true_up(
        min_amount_cents=5000, charge_amount_cents=1000, charge_precise_amount=D("10"), currency="CAD",
        period=Period(date(2024, 2, 1), date(2024, 3, 1)), active_from=date(2024, 2, 15),
    )
    assert true_up.amount_cents == 1586


def test_trial_days_are_free_and_the_first_paid_period_is_prorated():
    # 30.00/month, 10-day trial from Feb 5 (first paid day Feb 15): 15 of 29 days -> 15.517… -> 1552.
    fee = base_fee_for_period(
        amount_cents=3000, currency="CAD", period=Period(date(2024, 2, 1), date(2024, 3, 1)),
        active_from=date(2024, 2, 5), trial_ends_on=date(2024, 2, 15),
    )
    assert (fee.days, fee.amount_cents) == (15, 1552)


def test_a_half_cent_from_proration_rounds_up_exactly():
    # 31 cents × 15/62 days = 7.5 cents exactly; a pre-rounded ratio could give 7.4999… -> 7.
    fee = base_fee_for_period(
        amount_cents=31, currency="CAD", period=Period(date(2024, 1, 1), date(2024, 3, 3)),
        active_from=date(2024, 2, 17),
    )
    assert (fee.days, fee.period_days, fee.amount_cents) == (15, 62, 8)


@pytest.mark.parametrize(
    ("model", "props", "errors"),
    [
        ("standard", {}, {"amount": ["value_is_mandatory"]}),
        ("standard", {"amount": "-1"}, {"amount": ["invalid_amount"]}),
        ("standard", {"amount": "abc"}, {"amount": ["invalid_amount"]}),
        ("standard", {"amount": 1.5}, {"amount": ["value_is_invalid"]}),
        ("standard", {"amount": "NaN"}, {"amount": ["invalid_amount"]}),
        ("standard", {"amount": 2}, {}),
        ("standard", {"amount": "0.0004"}, {}),
        ("graduated", {}, {"graduated_ranges": ["missing_graduated_ranges"]}),
        ("graduated", {"graduated_ranges": []}, {"graduated_ranges": ["missing_graduated_ranges"]}),
        ("graduated", {"graduated_ranges": CLASSIC}, {}),
        ("graduated", {"graduated_ranges": ADJACENT}, {}),
        ("graduated", {"graduated_ranges": tiers((1, None, "1", "0"))}, {"graduated_ranges": ["invalid_graduated_ranges"]}),
        ("graduated", {"graduated_ranges": tiers((0, 10, "1", "0"))}, {"graduated_ranges": ["invalid_graduated_ranges"]}),
        ("graduated", {"graduated_ranges": tiers((0, 10, "1", "0"), (12, None, "1", "0"))},
         {"graduated_ranges": ["invalid_graduated_ranges"]}),
        ("graduated", {"graduated_ranges": tiers((0, 10, "1", "0"), (11, 20, "1", "0"), (20, None, "1", "0"))},
         {"graduated_ranges": ["invalid_graduated_ranges"]}),  # mixed classic and adjacent
        ("graduated", {"graduated_ranges": tiers((0, 10, "1", "0"), (11, 5, "1", "0"), (6, None, "1", "0"))},
         {"graduated_ranges": ["invalid_graduated_ranges"]}),
        ("graduated", {"graduated_ranges": tiers((0, None, "-1", "x"))},
         {"per_unit_amount": ["invalid_amount"], "flat_amount": ["invalid_amount"]}),
        ("volume", {}, {"volume_ranges": ["missing_volume_ranges"]}),
        ("volume", {"volume_ranges": "0-10"}, {"volume_ranges": ["invalid_volume_ranges"]}),
        ("volume", {"volume_ranges": VOLUME}, {}),
        ("package", {"amount": "5", "package_size": 0}, {"package_size": ["invalid_package_size"]}),
        ("package", {"amount": "5", "package_size": "100", "free_units": -1}, {"free_units": ["invalid_free_units"]}),
        ("package", {"amount": "5", "package_size": 100}, {}),
        ("percentage", {}, {"rate": ["value_is_mandatory"]}),
        ("percentage", {"rate": "-1"}, {"rate": ["invalid_rate"]}),
        ("percentage", {"rate": "1", "fixed_amount": "-0.1"}, {"fixed_amount": ["invalid_fixed_amount"]}),
        ("percentage", {"rate": "1", "free_units_per_events": "x"},
         {"free_units_per_events": ["invalid_free_units_per_events"]}),
        ("percentage", {"rate": "1", "per_transaction_min_amount": "5", "per_transaction_max_amount": "2"},
         {"per_transaction_max_amount": ["invalid_per_transaction_max_amount"]}),
        ("percentage", {"rate": "1", "free_units_per_total_aggregation": True},
         {"free_units_per_total_aggregation": ["value_is_invalid"]}),
        ("tiered", {}, {"charge_model": ["value_is_invalid"]}),
        ("standard", ["amount"], {"properties": ["value_is_invalid"]}),
    ],
)
def test_validate_properties_returns_lago_error_codes(model, props, errors):
    assert validate_properties(model, props) == errors


def test_price_charge_refuses_invalid_properties():
    with pytest.raises(ValueError, match="invalid_graduated_ranges"):
        price("graduated", {"graduated_ranges": tiers((0, 10, "1", "0"))}, "5")


@settings(max_examples=200, deadline=None)
@given(
    st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False),
    st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=4),
)
def test_classic_and_adjacent_ranges_price_the_same(units, widths):
    bounds = [0]
    for width in widths:
        bounds.append(bounds[-1] + width)
    prices = [("0.5", "1"), ("0.25", "0"), ("0.125", "3"), ("0.01", "2"), ("0.001", "0")]
    classic, adjacent = [], []
    for i, (low, high) in enumerate(zip(bounds, bounds[1:] + [None])):
        per_unit, flat = prices[i]
        classic.append({"from_value": low + 1 if i else 0, "to_value": high, "per_unit_amount": per_unit, "flat_amount": flat})
        adjacent.append({"from_value": low, "to_value": high, "per_unit_amount": per_unit, "flat_amount": flat})
    a = price_charge(charge_model="graduated", properties={"graduated_ranges": classic}, units=units, events_count=1, currency="CAD")
    b = price_charge(charge_model="graduated", properties={"graduated_ranges": adjacent}, units=units, events_count=1, currency="CAD")
    assert a.precise_amount == b.precise_amount
    # Independent check: Σ tier units × unit price + flats of entered tiers.
    expected = Decimal(0)
    for i, (low, high) in enumerate(zip(bounds, bounds[1:] + [None])):
        in_tier = max(Decimal(0), (units if high is None else min(units, high)) - low)
        if in_tier:
            expected += in_tier * Decimal(prices[i][0]) + Decimal(prices[i][1])
    assert a.precise_amount == expected


def test_charge_pricing_refuses_what_price_charge_refuses():
    with pytest.raises(TypeError):
        charge_pricing("standard", {"amount": 0.5})
    with pytest.raises(ValueError):
        charge_pricing("graduated", {"graduated_ranges": []})


def test_close_reparses_a_charge_whose_properties_were_replaced():
    from apps.catalog.models import Charge
    from apps.invoicing.close.pricing import _charge_pricing

    charge = Charge(charge_model="standard", properties={"amount": "1"})
    assert _charge_pricing(charge) is _charge_pricing(charge)
    charge.properties = {"amount": "2"}
    assert _charge_pricing(charge).parsed["amount"] == D("2")
    charge.charge_model, charge.properties = "package", {"amount": "5", "package_size": 10}
    assert _charge_pricing(charge).charge_model == "package"
