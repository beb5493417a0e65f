"""Billing periods: pure date arithmetic in the customer's local calendar.

Pure module: no ORM, no I/O, no clock. Every date here is a *local* date in the
customer's IANA timezone (Lago's `applicable_timezone`); `period_bounds_utc`
turns a period into the UTC instants the usage store filters on.

A `Period` is half-open: `start` is the first day, `end` is the first day of the
*next* period (exclusive). `Period.last_day` gives Lago's inclusive end date.
Calendar periods are always the full aligned period (1st of month, Monday, ...);
a subscription that starts mid-period is handled by proration, not by a shorter
`Period` (see `proration_factor`).
"""
from __future__ import annotations

import calendar
from dataclasses import dataclass
from functools import lru_cache
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo


class Interval(StrEnum):
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    SEMIANNUAL = "semiannual"
    YEARLY = "yearly"


class BillingTime(StrEnum):
    CALENDAR = "calendar"  # aligned on Monday / 1st of month / quarter / half-year / year
    ANNIVERSARY = "anniversary"  # anchored on the subscription date


_MONTHS: dict[Interval, int] = {
    Interval.MONTHLY: 1,
    Interval.QUARTERLY: 3,
    Interval.SEMIANNUAL: 6,
    Interval.YEARLY: 12,
}
# Periods per year, for Lago's upgrade/downgrade comparison by normalised yearly amount.
PERIODS_PER_YEAR: dict[Interval, int] = {
    Interval.WEEKLY: 52,
    Interval.MONTHLY: 12,
    Interval.QUARTERLY: 4,
    Interval.SEMIANNUAL: 2,
    Interval.YEARLY: 1,
}


@dataclass(frozen=True, order=True)
class Period:
    start: date  # first local day of the period (inclusive)
    end: date  # first local day of the next period (exclusive)

    def __post_init__(self) -> None:
        if type(self.start) is not date or type(self.end) is not date:
            raise TypeError("Period bounds must be datetime.date (not datetime)")
        if self.end <= self.start:
            raise ValueError(f"empty period {self.start}..{self.end}")

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def last_day(self) -> date:
        """Return the inclusive last day (Lago's `to_date`)."""
        return self.end - timedelta(days=1)

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day < self.end


def _coerce(interval: Interval | str, billing_time: BillingTime | str) -> tuple[Interval, BillingTime]:
    return Interval(interval), BillingTime(billing_time)


def _check_date(value: object, name: str) -> date:
    # datetime is a subclass of date; a datetime here means a timezone was forgotten.
    if type(value) is not date:
        raise TypeError(f"{name} must be a datetime.date, not {type(value).__name__}")
    return value


def add_months(anchor: date, months: int) -> date:
    """Return `anchor` moved by `months`, clamping the day to the month's length.

    Always computed from the original anchor, so Jan 31 gives Feb 28/29 then Mar 31.
    """
    index = anchor.year * 12 + (anchor.month - 1) + months
    year, month0 = divmod(index, 12)
    day = min(anchor.day, calendar.monthrange(year, month0 + 1)[1])
    return date(year, month0 + 1, day)


def _calendar_period(interval: Interval, at: date) -> Period:
    if interval is Interval.WEEKLY:
        start = at - timedelta(days=at.weekday())  # Monday
        return Period(start, start + timedelta(days=7))
    months = _MONTHS[interval]
    start = date(at.year, (at.month - 1) // months * months + 1, 1)
    return Period(start, add_months(start, months))


def _anniversary_period(interval: Interval, anchor: date, at: date) -> Period:
    if interval is Interval.WEEKLY:
        k = (at - anchor).days // 7
        start = anchor + timedelta(days=7 * k)
        return Period(start, start + timedelta(days=7))
    months = _MONTHS[interval]
    elapsed = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    k = elapsed // months
    if add_months(anchor, k * months) > at:
        k -= 1
    return Period(add_months(anchor, k * months), add_months(anchor, (k + 1) * months))


def period_containing(
    *, interval: Interval | str, billing_time: BillingTime | str, anchor_date: date, at: date
) -> Period:
    """Return the billing period that contains local day `at`.

    `anchor_date` is the subscription's start date (local); `at` must not be before it.
    """
    interval, billing_time = _coerce(interval, billing_time)
    anchor_date, at = _check_date(anchor_date, "anchor_date"), _check_date(at, "at")
    if at < anchor_date:
        raise ValueError(f"{at} is before the subscription anchor {anchor_date}")
    if billing_time is BillingTime.CALENDAR:
        return _calendar_period(interval, at)
    return _anniversary_period(interval, anchor_date, at)


def period_after(
    *, interval: Interval | str, billing_time: BillingTime | str, anchor_date: date, period: Period
) -> Period:
    """Return the period that follows `period`."""
    return period_containing(interval=interval, billing_time=billing_time, anchor_date=anchor_date, at=period.end)


def periods_between(
    *, interval: Interval | str, billing_time: BillingTime | str, anchor_date: date, start: date, end: date
) -> list[Period]:
    """Return the periods overlapping local days [start, end) (end exclusive), in order."""
    start, end = _check_date(start, "start"), _check_date(end, "end")
    if end <= start:
        return []
    return list(_periods_between(str(interval), str(billing_time), _check_date(anchor_date, "anchor_date"), start, end))


# A close asks the same question for every subscription sharing a plan's interval, an anchor and the close's
# day: the answer is a pure function of its arguments, so it is computed once per distinct question.
@lru_cache(maxsize=4096)
def _periods_between(interval: str, billing_time: str, anchor_date: date, start: date, end: date) -> tuple[Period, ...]:
    periods = [period_containing(interval=interval, billing_time=billing_time, anchor_date=anchor_date, at=start)]
    while periods[-1].end < end:
        periods.append(
            period_after(interval=interval, billing_time=billing_time, anchor_date=anchor_date, period=periods[-1])
        )
    return tuple(periods)


def proration_factor(*, period: Period, active_from: date, active_to: date | None = None) -> Decimal:
    """Return active days / days in period, as an exact Decimal in [0, 1].

    Days are local days; `active_from` is the first active day (inclusive) and
    `active_to` the first inactive day (exclusive, None = still active). A
    termination on day D that counts D as used passes `active_to = D + 1 day`.
    """
    _check_date(active_from, "active_from")
    if active_to is not None:
        _check_date(active_to, "active_to")
    first = max(period.start, active_from)
    stop = period.end if active_to is None else min(period.end, active_to)
    active_days = max(0, (stop - first).days)
    return Decimal(active_days) / Decimal(period.days)


def local_midnight_utc(day: date, timezone: str) -> datetime:
    """Return the UTC instant of local midnight starting `day` in IANA `timezone`."""
    return _local_midnight_utc(_check_date(day, "day"), timezone)


@lru_cache(maxsize=16384)  # pure, and asked for the same few period bounds across a whole close
def _local_midnight_utc(day: date, timezone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def period_bounds_utc(period: Period, timezone: str) -> tuple[datetime, datetime]:
    """Return [from, to) as aware UTC datetimes for `period` in IANA `timezone`.

    `to` is exclusive (next period's first instant). Lago shows `to_datetime` as
    the last second, i.e. `to - 1 s`.
    """
    return local_midnight_utc(period.start, timezone), local_midnight_utc(period.end, timezone)


def local_date(at: datetime, timezone: str) -> date:
    """Return the local calendar day of aware instant `at` in IANA `timezone`."""
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise TypeError("at must be an aware datetime")
    return at.astimezone(ZoneInfo(timezone)).date()
