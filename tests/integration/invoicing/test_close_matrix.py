"""The close under a controlled clock: calendar/anniversary × interval × advance/arrears × lifecycle event.

Expected cents come from plain integer day counts (half-up of amount × days / period days), not from the
rating engine; periods come from periods.py, which tests/unit/invoicing/test_periods.py pins down. After
every scenario a second close bills nothing.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
import time_machine

from apps.invoicing.close import periods_close
from apps.invoicing.models import CreditNote, Fee, Invoice
from apps.subscriptions.periods import period_containing
from apps.subscriptions.services import subscription_activate_due

from .conftest import TORONTO

pytestmark = pytest.mark.django_db

A, BIGGER, SMALLER = 9999, 19999, 4999
B = date(2026, 2, 11)  # a Wednesday


def half_up(amount: int, days: int, period_days: int) -> int:
    return (2 * amount * days + period_days) // (2 * period_days)


def local(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=TORONTO)


def fees_by_key() -> dict[str, int]:
    """Fees by key, and the close's in-advance credits (credit notes, by their key) as negative amounts."""
    billed = dict(Fee.objects.values_list("fee_key", "amount_cents"))
    for key, cents in CreditNote.objects.filter(close_key__isnull=False).values_list(
        "close_key", "sub_total_excluding_taxes_amount_cents"
    ):
        billed[key] = -cents
    return billed


@pytest.mark.parametrize("event", ["start", "terminate", "upgrade", "downgrade"])
@pytest.mark.parametrize("advance", [True, False], ids=["advance", "arrears"])
@pytest.mark.parametrize("interval", ["weekly", "monthly", "quarterly", "yearly"])
@pytest.mark.parametrize("billing_time", ["calendar", "anniversary"])
def test_close_bills_exact_base_fees(billing, settings, billing_time, interval, advance, event):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    plan = billing.plan("a", interval=interval, amount_cents=A, pay_in_advance=advance)
    billing.customer()
    p0 = period_containing(interval=interval, billing_time=billing_time, anchor_date=B, at=B)
    pd = p0.days
    start = B if event == "start" else p0.start
    sub = billing.subscribe("s1", plan, billing_time=billing_time, when=local(start, 10 if event == "start" else 0))
    periods_close(as_of=local(start, 11))  # in advance: bills the first period now
    mid = p0.start + timedelta(days=pd // 2)
    expected: dict[str, int] = {}
    close_at = p0.end
    base0 = f"sub:{sub.pk}:base:{p0.start}"

    if event == "start":
        expected[base0] = half_up(A, (p0.end - B).days, pd)
    elif event == "terminate":
        billing.terminate(sub, when=local(mid, 15))
        used = (mid - p0.start).days + 1  # the termination day counts as used
        if advance:
            expected[base0] = A
            expected[f"sub:{sub.pk}:credit:{p0.start}"] = -half_up(A, pd - used, pd)
        else:
            expected[base0] = half_up(A, used, pd)
    elif event == "upgrade":
        big = billing.plan("big", interval=interval, amount_cents=BIGGER, pay_in_advance=advance)
        new = billing.subscribe("s1", big, billing_time=billing_time, when=local(mid, 15))
        # The successor keeps the anchor (Lago): its period is the one in course, whatever the billing time.
        p_new = period_containing(interval=interval, billing_time=billing_time, anchor_date=B, at=mid)
        close_at = max(p0.end, p_new.end)
        used = (mid - p0.start).days  # the upgrade day belongs to the new plan
        if advance:
            expected[base0] = A
            expected[f"sub:{sub.pk}:credit:{p0.start}"] = -half_up(A, pd - used, pd)
        else:
            expected[base0] = half_up(A, used, pd)
        expected[f"sub:{new.pk}:base:{p_new.start}"] = half_up(BIGGER, (p_new.end - mid).days, p_new.days)
    else:  # downgrade: applied when the period ends
        small = billing.plan("small", interval=interval, amount_cents=SMALLER, pay_in_advance=advance)
        new = billing.subscribe("s1", small, billing_time=billing_time, when=local(mid, 15))
        with time_machine.travel(local(p0.end, 0, 5), tick=False):
            assert subscription_activate_due() == 1
        p1 = period_containing(interval=interval, billing_time=billing_time, anchor_date=B, at=p0.end)
        close_at = p1.end
        expected[base0] = A
        expected[f"sub:{new.pk}:base:{p1.start}"] = SMALLER

    as_of = local(close_at, 1)
    periods_close(as_of=as_of)
    billed = fees_by_key()
    assert {key: billed.get(key) for key in expected} == expected
    assert not any(":credit:" in key for key in set(billed) - set(expected))
    for invoice in Invoice.objects.all():
        assert invoice.status == Invoice.Status.FINALIZED
        assert invoice.fees_amount_cents == sum(invoice.fees.values_list("amount_cents", flat=True))
        # An upgrade's in-advance credit (a credit note) is consumed by the next invoice, after tax (issue 15, 1).
        assert invoice.total_amount_cents == (invoice.fees_amount_cents + invoice.taxes_amount_cents
                                              - invoice.credit_notes_amount_cents)
        assert invoice.total_amount_cents >= 0
    assert not Fee.objects.filter(amount_cents__lt=0).exists()  # credits are credit notes, never negative lines

    count = Fee.objects.count()
    numbers: dict[str, list[int]] = {}
    for series, sequential_id in Invoice.objects.order_by("sequential_id").values_list("series", "sequential_id"):
        numbers.setdefault(series, []).append(sequential_id)
    assert periods_close(as_of=as_of).invoices_count == 0  # nothing more to invoice
    assert Fee.objects.count() == count
    assert all(ids == list(range(1, len(ids) + 1)) for ids in numbers.values())  # gapless per series
