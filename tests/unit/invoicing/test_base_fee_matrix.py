"""Base fee matrix: calendar/anniversary × interval × in advance/in arrears × lifecycle event.

Scenario: a 99.99 CAD plan (9999 cents) starts 2023-11-15 (a Wednesday); the mid-life
event happens on 2024-02-20 (a Tuesday; 2024 is a leap year). Expected cents are
hand-computed as half-up(9999 × days / period_days) from the literal day counts
in the table; `test_table_is_self_consistent` re-derives them with integer
arithmetic so a typo in the table cannot hide.
"""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from apps.subscriptions.periods import Period, period_after, period_containing
from apps.invoicing.rating import (
    base_fee_billing_date,
    base_fee_for_period,
    is_upgrade,
    plan_change_effective_on,
    termination_credit,
    upgrade_credit,
)

PLAN, BIGGER, SMALLER = 9999, 19999, 4999
STARTED_ON, EVENT_ON = date(2023, 11, 15), date(2024, 2, 20)

# (billing_time, interval): first period, its billed days, its fee;
# period holding EVENT_ON; terminate (used days, arrears fee, credited days, credit);
# upgrade (old used days, old arrears fee, credited days, credit, new plan fee).
MATRIX = {
    ("calendar", "weekly"): (
        Period(date(2023, 11, 13), date(2023, 11, 20)), 5, 7142,
        Period(date(2024, 2, 19), date(2024, 2, 26)),
        (2, 2857, 5, 7142), (1, 1428, 6, 8571, 17142),
    ),
    ("calendar", "monthly"): (
        Period(date(2023, 11, 1), date(2023, 12, 1)), 16, 5333,
        Period(date(2024, 2, 1), date(2024, 3, 1)),
        (20, 6896, 9, 3103), (19, 6551, 10, 3448, 6896),
    ),
    ("calendar", "quarterly"): (
        Period(date(2023, 10, 1), date(2024, 1, 1)), 47, 5108,
        Period(date(2024, 1, 1), date(2024, 4, 1)),
        (51, 5604, 40, 4395), (50, 5494, 41, 4505, 9011),
    ),
    ("calendar", "yearly"): (
        Period(date(2023, 1, 1), date(2024, 1, 1)), 47, 1288,
        Period(date(2024, 1, 1), date(2025, 1, 1)),
        (51, 1393, 315, 8606), (50, 1366, 316, 8633, 17267),
    ),
    ("anniversary", "weekly"): (
        Period(date(2023, 11, 15), date(2023, 11, 22)), 7, 9999,
        Period(date(2024, 2, 14), date(2024, 2, 21)),
        (7, 9999, 0, 0), (6, 8571, 1, 1428, 2857),  # EVENT_ON is the period's last day
    ),
    ("anniversary", "monthly"): (
        Period(date(2023, 11, 15), date(2023, 12, 15)), 30, 9999,
        Period(date(2024, 2, 15), date(2024, 3, 15)),
        (6, 2069, 23, 7930), (5, 1724, 24, 8275, 16551),
    ),
    ("anniversary", "quarterly"): (
        Period(date(2023, 11, 15), date(2024, 2, 15)), 92, 9999,
        Period(date(2024, 2, 15), date(2024, 5, 15)),
        (6, 667, 84, 9332), (5, 556, 85, 9444, 18888),
    ),
    ("anniversary", "yearly"): (
        Period(date(2023, 11, 15), date(2024, 11, 15)), 366, 9999,
        Period(date(2023, 11, 15), date(2024, 11, 15)),  # the first period is still running
        (98, 2677, 268, 7322), (97, 2650, 269, 7349, 14699),
    ),
}
CASES = [(bt, iv, adv) for (bt, iv) in MATRIX for adv in (True, False)]


def _half_up(amount: int, days: int, period_days: int) -> int:
    return (2 * amount * days + period_days) // (2 * period_days)


@pytest.mark.parametrize(("billing_time", "interval"), list(MATRIX))
def test_table_is_self_consistent(billing_time, interval):
    first, first_days, first_cents, mid, term, upg = MATRIX[(billing_time, interval)]
    assert first_cents == _half_up(PLAN, first_days, first.days)
    used, used_cents, credited, credit_cents = term
    assert used + credited == mid.days - max(0, (STARTED_ON - mid.start).days)
    assert (used_cents, credit_cents) == (_half_up(PLAN, used, mid.days), _half_up(PLAN, credited, mid.days))
    used, used_cents, credited, credit_cents, new_cents = upg
    assert used + credited == mid.days - max(0, (STARTED_ON - mid.start).days)
    assert used_cents == _half_up(PLAN, used, mid.days)
    assert (credit_cents, new_cents) == (_half_up(PLAN, credited, mid.days), _half_up(BIGGER, credited, mid.days))


@pytest.mark.parametrize(("billing_time", "interval", "pay_in_advance"), CASES)
def test_start_mid_period_bills_the_prorated_first_period(billing_time, interval, pay_in_advance):
    first, first_days, first_cents, *_ = MATRIX[(billing_time, interval)]
    kw = {"interval": interval, "billing_time": billing_time, "anchor_date": STARTED_ON}
    assert period_containing(at=STARTED_ON, **kw) == first
    fee = base_fee_for_period(amount_cents=PLAN, currency="CAD", period=first, active_from=STARTED_ON)
    assert (fee.days, fee.period_days, fee.amount_cents) == (first_days, first.days, first_cents)
    billed_on = base_fee_billing_date(pay_in_advance=pay_in_advance, period=first, active_from=STARTED_ON)
    assert billed_on == (STARTED_ON if pay_in_advance else first.end)


@pytest.mark.parametrize(("billing_time", "interval", "pay_in_advance"), CASES)
def test_termination_mid_period(billing_time, interval, pay_in_advance):
    _, _, _, mid, (used, used_cents, credited, credit_cents), _ = MATRIX[(billing_time, interval)]
    kw = {"interval": interval, "billing_time": billing_time, "anchor_date": STARTED_ON}
    assert period_containing(at=EVENT_ON, **kw) == mid
    if pay_in_advance:
        billed = base_fee_for_period(amount_cents=PLAN, currency="CAD", period=mid, active_from=STARTED_ON)
        credit = termination_credit(amount_cents=PLAN, currency="CAD", period=mid, terminated_on=EVENT_ON)
        assert billed.amount_cents == PLAN  # every mid period here is fully active
        assert (credit.days, credit.amount_cents) == (credited, credit_cents)
    else:
        fee = base_fee_for_period(
            amount_cents=PLAN, currency="CAD", period=mid, active_from=STARTED_ON,
            active_to=EVENT_ON + timedelta(days=1),  # the termination day counts as used
        )
        assert (fee.days, fee.amount_cents) == (used, used_cents)


@pytest.mark.parametrize(("billing_time", "interval", "pay_in_advance"), CASES)
def test_upgrade_applies_at_once_and_credits_the_unused_days(billing_time, interval, pay_in_advance):
    _, _, _, mid, _, (used, used_cents, credited, credit_cents, new_cents) = MATRIX[(billing_time, interval)]
    assert is_upgrade(current_amount_cents=PLAN, current_interval=interval, new_amount_cents=BIGGER, new_interval=interval)
    assert plan_change_effective_on(upgrade=True, changed_on=EVENT_ON, period=mid) == EVENT_ON
    new_fee = base_fee_for_period(amount_cents=BIGGER, currency="CAD", period=mid, active_from=EVENT_ON)
    assert (new_fee.days, new_fee.amount_cents) == (credited, new_cents)
    if pay_in_advance:
        credit = upgrade_credit(amount_cents=PLAN, currency="CAD", period=mid, upgraded_on=EVENT_ON)
        assert (credit.days, credit.amount_cents) == (credited, credit_cents)
        assert base_fee_billing_date(pay_in_advance=True, period=mid, active_from=EVENT_ON) == EVENT_ON
    else:
        old_fee = base_fee_for_period(
            amount_cents=PLAN, currency="CAD", period=mid, active_from=STARTED_ON, active_to=EVENT_ON
        )
        assert (old_fee.days, old_fee.amount_cents) == (used, used_cents)


@pytest.mark.parametrize(("billing_time", "interval", "pay_in_advance"), CASES)
def test_downgrade_waits_for_the_period_end(billing_time, interval, pay_in_advance):
    _, _, _, mid, _, _ = MATRIX[(billing_time, interval)]
    kw = {"interval": interval, "billing_time": billing_time, "anchor_date": STARTED_ON}
    assert not is_upgrade(
        current_amount_cents=PLAN, current_interval=interval, new_amount_cents=SMALLER, new_interval=interval
    )
    switch_on = plan_change_effective_on(upgrade=False, changed_on=EVENT_ON, period=mid)
    assert switch_on == mid.end
    old_fee = base_fee_for_period(amount_cents=PLAN, currency="CAD", period=mid, active_from=STARTED_ON, active_to=switch_on)
    assert old_fee.amount_cents == PLAN
    following = period_after(period=mid, **kw)
    assert following.start == mid.end
    new_fee = base_fee_for_period(amount_cents=SMALLER, currency="CAD", period=following, active_from=switch_on)
    assert new_fee.amount_cents == SMALLER
    assert base_fee_billing_date(pay_in_advance=pay_in_advance, period=following, active_from=switch_on) == (
        following.start if pay_in_advance else following.end
    )
