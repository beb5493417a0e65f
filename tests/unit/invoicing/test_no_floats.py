"""A float anywhere on a money or quantity path raises TypeError."""
from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.subscriptions.periods import Period
from apps.invoicing.rating import (
    UsageRecord,
    base_fee_for_period,
    charge_minimum_true_up,
    price_charge,
    termination_credit,
    upgrade_credit,
)
from apps.catalog.taxes import invoice_totals
from tests.tax_rates import HST_13

VALID = {
    "standard": {"amount": "0.5"},
    "package": {"amount": "5", "package_size": 100, "free_units": 10},
    "percentage": {"rate": "1.5", "fixed_amount": "0.1", "free_units_per_total_aggregation": "10"},
    "graduated": {
        "graduated_ranges": [
            {"from_value": 0, "to_value": 10, "per_unit_amount": "1", "flat_amount": "0"},
            {"from_value": 11, "to_value": None, "per_unit_amount": "0.5", "flat_amount": "2"},
        ]
    },
    "volume": {
        "volume_ranges": [
            {"from_value": 0, "to_value": 10, "per_unit_amount": "1", "flat_amount": "0"},
            {"from_value": 10, "to_value": None, "per_unit_amount": "0.5", "flat_amount": "2"},
        ]
    },
}


def _leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, path + (index,))
    else:
        yield path


def _replace(value, path, new):
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        return {k: (_replace(v, rest, new) if k == head else v) for k, v in value.items()}
    return [(_replace(v, rest, new) if i == head else v) for i, v in enumerate(value)]


CASES = [(model, path) for model, props in VALID.items() for path in _leaves(props)]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(CASES), st.floats(allow_nan=True, allow_infinity=True))
def test_a_float_in_any_property_raises_type_error(case, number):
    model, path = case
    properties = _replace(VALID[model], path, number)
    with pytest.raises(TypeError):
        price_charge(charge_model=model, properties=properties, units=Decimal("12"), events_count=2,
                     currency="CAD", per_event_amounts=[Decimal("5"), Decimal("7")])


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(sorted(VALID)), st.floats(allow_nan=False, allow_infinity=False))
def test_float_units_or_event_amounts_raise_type_error(model, number):
    with pytest.raises(TypeError):
        price_charge(charge_model=model, properties=VALID[model], units=number, events_count=1, currency="CAD")
    with pytest.raises(TypeError):
        price_charge(charge_model=model, properties=VALID[model], units=Decimal(1), events_count=1,
                     currency="CAD", per_event_amounts=[number])


PERIOD = Period(date(2024, 2, 1), date(2024, 3, 1))


@pytest.mark.parametrize(
    "call",
    [
        lambda: base_fee_for_period(amount_cents=999.0, currency="CAD", period=PERIOD, active_from=date(2024, 2, 2)),
        lambda: termination_credit(amount_cents=999.0, currency="CAD", period=PERIOD, terminated_on=date(2024, 2, 2)),
        lambda: upgrade_credit(amount_cents=999.0, currency="CAD", period=PERIOD, upgraded_on=date(2024, 2, 2)),
        lambda: charge_minimum_true_up(min_amount_cents=100, charge_amount_cents=1, charge_precise_amount=0.01,
                                       currency="CAD"),
        lambda: UsageRecord(timestamp=datetime(2024, 2, 2, tzinfo=UTC), value=0.1),
        lambda: invoice_totals([(99.0, [HST_13])]),
        lambda: price_charge(charge_model="standard", properties={"amount": "1"}, units=Decimal(1),
                             events_count=1.0, currency="CAD"),
    ],
)
def test_floats_on_fee_paths_raise_type_error(call):
    with pytest.raises(TypeError):
        call()
