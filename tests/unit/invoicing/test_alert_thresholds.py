"""Alert threshold crossings, with Lago's own examples (spec/models/usage_monitoring/alert_spec.rb) as expected values."""
from __future__ import annotations

from decimal import Decimal

from apps.invoicing.alerts import thresholds_crossed
from apps.invoicing.models import UsageAlertThreshold


def _alert(fixed, recurring=None):
    rows = [UsageAlertThreshold(code=f"warn{value}", value=Decimal(value)) for value in fixed]
    if recurring is not None:
        rows.append(UsageAlertThreshold(code="rec", value=Decimal(recurring), recurring=True))
    return rows


def _values(thresholds, previous, current):
    crossed = thresholds_crossed(thresholds, previous=Decimal(previous), current=Decimal(current))
    return [int(c.value) for c in crossed]


def test_lago_fixed_thresholds_between_previous_and_current_inclusive():
    alert = _alert([10, 30, 50], recurring=100)
    assert _values(alert, 8, 8) == []
    assert _values(alert, 8, 30) == [10, 30]
    assert _values(alert, 31, 60) == [50]
    assert _values(alert, 30, 29) == []


def test_lago_recurring_thresholds_past_the_last_fixed_one():
    assert _values(_alert([10, 30, 50], recurring=100), 33, 351) == [50, 150, 250, 350]
    assert _values(_alert([], recurring=100), 0, 150) == [100]


def test_recurring_steps_already_passed_are_not_crossed_again():
    alert = _alert([10, 30, 50], recurring=100)
    assert _values(alert, 233, 351) == [250, 350]
    assert _values(alert, 250, 349) == []


def test_crossings_carry_their_codes():
    crossed = thresholds_crossed(_alert([10], recurring=100), previous=Decimal(0), current=Decimal(110))
    assert [(c.code, c.recurring) for c in crossed] == [("warn10", False), ("rec", True)]
