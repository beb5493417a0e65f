from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from apps.invoicing.rating import UsageRecord, aggregate, round_units

START = datetime(2024, 1, 1, tzinfo=UTC)
END = START + timedelta(days=10)


def at(days: float = 0, hours: int = 0) -> datetime:
    return START + timedelta(days=days, hours=hours)


def rec(when: datetime, value: str = "0", key: str | None = None, op: str = "add") -> UsageRecord:
    return UsageRecord(timestamp=when, value=Decimal(value), unique_key=key, operation=op)


def agg(kind: str, records, **kw):
    return aggregate(aggregation_type=kind, records=records, period_from=START, period_to=END, **kw)


def test_count_counts_records():
    result = agg("count_agg", [rec(at(1)), rec(at(2)), rec(at(3))])
    assert (result.units, result.events_count) == (Decimal(3), 3)


def test_sum_and_recurring_sum_carry_the_running_total():
    records = [rec(at(1), "1.5"), rec(at(2), "2.25"), rec(at(3), "-0.75")]
    assert agg("sum_agg", records).units == Decimal("3.00")
    recurring = agg("sum_agg", records, recurring=True, carried_value=Decimal("10"))
    assert (recurring.units, recurring.carried_value) == (Decimal("13.00"), Decimal("13.00"))
    assert agg("sum_agg", [], recurring=True, carried_value=Decimal("10")).units == Decimal("10")


def test_max_and_latest():
    records = [rec(at(1), "5"), rec(at(3), "2"), rec(at(2), "9")]
    assert agg("max_agg", records).units == Decimal("9")
    assert agg("latest_agg", records).units == Decimal("2")  # by timestamp, not input order
    assert agg("max_agg", []).units == Decimal(0)
    assert agg("latest_agg", []).units == Decimal(0)


def test_unique_count_bills_keys_active_at_any_time_in_the_period():
    records = [rec(at(1), key="a"), rec(at(2), key="b"), rec(at(3), key="a"), rec(at(4), key="b", op="remove")]
    result = agg("unique_count_agg", records)
    assert result.units == Decimal(2)
    assert result.carried_keys == frozenset()  # not recurring: nothing carries


def test_recurring_unique_count_carries_seats_active_at_period_end():
    records = [rec(at(2), key="d", op="remove"), rec(at(3), key="e")]
    result = agg("unique_count_agg", records, recurring=True, carried_keys=frozenset({"c", "d"}))
    assert result.units == Decimal(3)  # c, d (removed mid-period, still billed), e
    assert result.carried_keys == frozenset({"c", "e"})
    following = aggregate(
        aggregation_type="unique_count_agg", records=[], period_from=END, period_to=END + timedelta(days=10),
        recurring=True, carried_keys=result.carried_keys,
    )
    assert following.units == Decimal(2)


def test_weighted_sum_is_time_weighted_over_the_period():
    # Level 10 for 5 days, 20 for 3 days, 15 for 2 days over 10 days: (50 + 60 + 30) / 10.
    records = [rec(at(0), "10"), rec(at(5), "10"), rec(at(8), "-5")]
    assert agg("weighted_sum_agg", records).units == Decimal("14")
    # Recurring, starting at level 4: (14×5 + 24×3 + 19×2) / 10 = 18; level 19 carries over.
    recurring = agg("weighted_sum_agg", records, recurring=True, carried_value=Decimal("4"))
    assert (recurring.units, recurring.carried_value) == (Decimal("18"), Decimal("19"))


def test_weighted_sum_without_events_is_the_carried_level():
    assert agg("weighted_sum_agg", [], recurring=True, carried_value=Decimal("7.5")).units == Decimal("7.5")
    assert agg("weighted_sum_agg", [rec(at(0, hours=6), "1")]).units == Decimal("0.975")  # 1 × 234h / 240h


def test_records_must_fall_in_the_period_and_types_are_strict():
    with pytest.raises(ValueError, match="outside the period"):
        agg("count_agg", [rec(END)])
    with pytest.raises(ValueError):
        agg("max_agg", [], recurring=True)
    with pytest.raises(ValueError):
        agg("sum_agg", [], carried_value=Decimal(1))
    with pytest.raises(ValueError):
        agg("unique_count_agg", [rec(at(1))])
    with pytest.raises(TypeError):
        UsageRecord(timestamp=datetime(2024, 1, 2), value=Decimal(1))
    with pytest.raises(TypeError):
        UsageRecord(timestamp=at(1), value=1.0)
    with pytest.raises(TypeError):
        agg("sum_agg", [], recurring=True, carried_value=1.0)


@pytest.mark.parametrize(
    ("units", "function", "precision", "expected"),
    [
        ("1.21", "ceil", 1, "1.3"),
        ("1.29", "floor", 1, "1.2"),
        ("2.5", "round", 0, "3"),
        ("-2.5", "round", 0, "-3"),
        ("1250", "round", -2, "1300"),
        ("1249", "ceil", -2, "1300"),
    ],
)
def test_metric_rounding(units, function, precision, expected):
    assert round_units(Decimal(units), rounding_function=function, rounding_precision=precision) == Decimal(expected)
