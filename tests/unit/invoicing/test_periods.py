from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from apps.subscriptions.periods import (
    Period,
    add_months,
    local_date,
    period_after,
    period_bounds_utc,
    period_containing,
    periods_between,
    proration_factor,
)


@pytest.mark.parametrize(
    ("interval", "at", "expected"),
    [
        ("weekly", date(2024, 2, 20), Period(date(2024, 2, 19), date(2024, 2, 26))),  # Tuesday -> Monday
        ("weekly", date(2024, 2, 19), Period(date(2024, 2, 19), date(2024, 2, 26))),
        ("weekly", date(2024, 2, 25), Period(date(2024, 2, 19), date(2024, 2, 26))),  # Sunday
        ("monthly", date(2024, 2, 29), Period(date(2024, 2, 1), date(2024, 3, 1))),
        ("quarterly", date(2024, 6, 30), Period(date(2024, 4, 1), date(2024, 7, 1))),
        ("quarterly", date(2024, 12, 31), Period(date(2024, 10, 1), date(2025, 1, 1))),
        ("semiannual", date(2024, 7, 1), Period(date(2024, 7, 1), date(2025, 1, 1))),
        ("yearly", date(2024, 7, 1), Period(date(2024, 1, 1), date(2025, 1, 1))),
    ],
)
def test_calendar_periods_align_on_the_interval_start(interval, at, expected):
    period = period_containing(interval=interval, billing_time="calendar", anchor_date=date(2020, 1, 7), at=at)
    assert period == expected


def test_anniversary_month_end_anchor_clamps_then_recovers():
    kw = {"interval": "monthly", "billing_time": "anniversary", "anchor_date": date(2024, 1, 31)}
    first = period_containing(at=date(2024, 1, 31), **kw)
    assert first == Period(date(2024, 1, 31), date(2024, 2, 29))
    second = period_after(period=first, **kw)
    assert second == Period(date(2024, 2, 29), date(2024, 3, 31))
    assert period_after(period=second, **kw) == Period(date(2024, 3, 31), date(2024, 4, 30))
    assert period_containing(at=date(2025, 2, 28), **kw) == Period(date(2025, 2, 28), date(2025, 3, 31))
    assert period_containing(at=date(2025, 2, 27), **kw) == Period(date(2025, 1, 31), date(2025, 2, 28))


def test_anniversary_yearly_on_leap_day():
    kw = {"interval": "yearly", "billing_time": "anniversary", "anchor_date": date(2024, 2, 29)}
    assert period_containing(at=date(2025, 3, 1), **kw) == Period(date(2025, 2, 28), date(2026, 2, 28))
    assert period_containing(at=date(2028, 2, 29), **kw) == Period(date(2028, 2, 29), date(2029, 2, 28))


def test_add_months_clamps_from_the_original_anchor():
    assert [add_months(date(2023, 8, 31), n) for n in (1, 2, 6)] == [
        date(2023, 9, 30), date(2023, 10, 31), date(2024, 2, 29)
    ]


def test_periods_between_covers_the_range_without_gaps():
    periods = periods_between(
        interval="quarterly", billing_time="anniversary", anchor_date=date(2023, 11, 30),
        start=date(2023, 11, 30), end=date(2024, 9, 1),
    )
    assert periods == [
        Period(date(2023, 11, 30), date(2024, 2, 29)),
        Period(date(2024, 2, 29), date(2024, 5, 30)),
        Period(date(2024, 5, 30), date(2024, 8, 30)),
        Period(date(2024, 8, 30), date(2024, 11, 30)),
    ]
    assert all(a.end == b.start for a, b in zip(periods, periods[1:]))


def test_proration_counts_active_days_over_period_days():
    february = Period(date(2024, 2, 1), date(2024, 3, 1))
    assert february.days == 29 and february.last_day == date(2024, 2, 29)
    assert proration_factor(period=february, active_from=date(2024, 2, 15)) == Decimal(15) / Decimal(29)
    assert proration_factor(period=february, active_from=date(2024, 1, 1), active_to=date(2024, 2, 11)) == Decimal(
        10
    ) / Decimal(29)
    assert proration_factor(period=february, active_from=date(2024, 1, 1)) == Decimal(1)
    assert proration_factor(period=february, active_from=date(2024, 3, 5)) == Decimal(0)


def test_toronto_month_starts_at_5z_in_winter_and_ends_at_4z_after_dst():
    start, end = period_bounds_utc(Period(date(2024, 3, 1), date(2024, 4, 1)), "America/Toronto")
    assert start == datetime(2024, 3, 1, 5, 0, tzinfo=UTC)
    assert end == datetime(2024, 4, 1, 4, 0, tzinfo=UTC)  # DST began 2024-03-10
    assert period_bounds_utc(Period(date(2024, 3, 1), date(2024, 4, 1)), "UTC") == (
        datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC),
    )


def test_an_event_just_after_midnight_utc_belongs_to_the_previous_toronto_period():
    event_at = datetime(2024, 3, 1, 3, 30, tzinfo=UTC)  # 22:30 on Feb 29 in Toronto
    kw = {"interval": "monthly", "billing_time": "calendar", "anchor_date": date(2024, 1, 1)}
    assert period_containing(at=local_date(event_at, "America/Toronto"), **kw) == Period(
        date(2024, 2, 1), date(2024, 3, 1)
    )
    assert period_containing(at=local_date(event_at, "UTC"), **kw) == Period(date(2024, 3, 1), date(2024, 4, 1))


def test_dates_only_no_datetimes_and_no_naive_instants():
    with pytest.raises(TypeError):
        period_containing(interval="monthly", billing_time="calendar", anchor_date=date(2024, 1, 1),
                          at=datetime(2024, 2, 1, tzinfo=UTC))
    with pytest.raises(TypeError):
        local_date(datetime(2024, 2, 1), "UTC")
    with pytest.raises(ValueError):
        period_containing(interval="monthly", billing_time="calendar", anchor_date=date(2024, 1, 2), at=date(2024, 1, 1))
    with pytest.raises(ValueError):
        period_containing(interval="daily", billing_time="calendar", anchor_date=date(2024, 1, 1), at=date(2024, 1, 1))
