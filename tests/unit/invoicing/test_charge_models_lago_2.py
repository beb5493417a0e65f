"""graduated_percentage and dynamic charge models (issue 21): Lago's documented examples and validation codes."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from apps.invoicing.rating import price_charge, validate_properties

# Lago's guide, "Graduated percentage": 1 % + $200 to 1,000, 2 % + $300 to 10,000, 3 % + $400 beyond.
LAGO_TIERS = {"graduated_percentage_ranges": [
    {"from_value": 0, "to_value": 1000, "rate": "1", "flat_amount": "200"},
    {"from_value": 1001, "to_value": 10000, "rate": "2", "flat_amount": "300"},
    {"from_value": 10001, "to_value": None, "rate": "3", "flat_amount": "400"},
]}


def price(units, **extra):
    return price_charge(charge_model="graduated_percentage", properties=LAGO_TIERS, units=D(units), events_count=1,
                        currency="USD", **extra)


def test_graduated_percentage_bills_lagos_documented_transactions():
    # $500: 500 × 1 % + $200 = $205; then $550 more: (500 × 1 % + 50 × 2 %) + $300 = $306; then $4,000: 4,000 × 2 %.
    assert price("500").amount_cents == 20500
    assert price("1050").amount_cents == 20500 + 30600
    assert price("5050").amount_cents == 20500 + 30600 + 8000
    tiers = price("1050").details["graduated_percentage_ranges"]
    assert [(tier["units"], tier["rate"], tier["amount"]) for tier in tiers] == [
        (D(1000), D(1), D(210)), (D(50), D(2), D(301))]


def test_graduated_percentage_validation_uses_lagos_codes():
    assert validate_properties("graduated_percentage", {}) == {
        "graduated_percentage_ranges": ["missing_graduated_percentage_ranges"]}
    gap = {"graduated_percentage_ranges": [{"from_value": 0, "to_value": 10, "rate": "1", "flat_amount": "0"},
                                           {"from_value": 20, "to_value": None, "rate": "1", "flat_amount": "0"}]}
    assert validate_properties("graduated_percentage", gap) == {
        "graduated_percentage_ranges": ["invalid_graduated_percentage_ranges"]}
    bad = {"graduated_percentage_ranges": [{"from_value": 0, "to_value": None, "rate": "-1", "flat_amount": "x"}]}
    assert validate_properties("graduated_percentage", bad) == {"rate": ["invalid_rate"], "flat_amount": ["invalid_amount"]}
    assert validate_properties("graduated_percentage", LAGO_TIERS) == {}


def test_dynamic_bills_the_events_own_prices_and_nothing_without_units():
    result = price_charge(charge_model="dynamic", properties={}, units=D(3), events_count=3, currency="CAD",
                          events_amount=D("13.345"))
    assert (result.precise_amount, result.amount_cents) == (D("13.345"), 1335)
    assert price_charge(charge_model="dynamic", properties={}, units=D(0), events_count=0, currency="CAD",
                        events_amount=D(0)).amount_cents == 0
    with pytest.raises(ValueError):
        price_charge(charge_model="dynamic", properties={}, units=D(1), events_count=1, currency="CAD")
