"""Money on the lifecycle paths (issue 15): plan changes, ending dates, terminations, late usage, cut-offs.

Each test here reproduces a defect found on the close's lifecycle paths; each failed before its fix.
"""
from __future__ import annotations

import pytest
import time_machine

from apps.invoicing.close import periods_close
from apps.invoicing.models import Fee, Invoice
from apps.subscriptions.models import Subscription
from apps.subscriptions.services import SubscriptionRequest, subscription_activate_due, subscription_create

from tests.integration.payments.stripe_fixtures import localstripe, stripe_env  # noqa: F401

from .conftest import at

pytestmark = pytest.mark.django_db


def _base_fees() -> dict[str, int]:
    return dict(Fee.objects.filter(fee_type="subscription").values_list("fee_key", "amount_cents"))


# --------------------------------------------------------------------------- defect 3: downgrade vs the close


def test_pending_downgrade_due_at_the_close_is_activated_by_it_and_billed_once(billing, settings):
    """Pay-in-advance downgrade, and no activation job ran before the close: the close starts the new plan
    itself, so the new period is billed once, on the new plan (not in advance on the old one, then again)."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    big = billing.plan("big", amount_cents=5000, pay_in_advance=True)
    small = billing.plan("small", amount_cents=2000, pay_in_advance=True)
    billing.customer()
    old = billing.subscribe("s1", big, when=at(2026, 3, 1, 0, 0))
    new = billing.subscribe("s1", small, when=at(2026, 3, 10))

    periods_close(as_of=at(2026, 4, 1, 1, 0))
    # The activation job runs late, then the next closes: nothing more to bill for April.
    with time_machine.travel(at(2026, 4, 1, 2, 0), tick=False):
        subscription_activate_due()
    periods_close(as_of=at(2026, 4, 1, 3, 0))
    periods_close(as_of=at(2026, 4, 20))

    assert _base_fees() == {f"sub:{old.pk}:base:2026-03-01": 5000, f"sub:{new.pk}:base:2026-04-01": 2000}
    assert not Fee.objects.filter(fee_type="credit").exists()
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.status, new.status) == ("terminated", "active")
    assert new.started_at == at(2026, 4, 1, 0, 0)


# --------------------------------------------------------------------------- defect 9: ending_at, anchors


def test_subscription_ending_at_is_terminated_there_and_billed_to_that_day(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    plan = billing.plan("pro", amount_cents=3000)  # arrears
    billing.customer()
    with time_machine.travel(at(2026, 3, 1, 0, 0), tick=False):
        sub = subscription_create(
            service=billing.service,
            request=SubscriptionRequest(
                external_id="s1", external_customer_id="acme", plan=plan, ending_at=at(2026, 4, 15, 12, 0)
            ),
        )
    for month in (4, 5, 6, 7):
        periods_close(as_of=at(2026, month, 1, 1, 0))

    sub.refresh_from_db()
    assert sub.status == "terminated" and sub.terminated_at == at(2026, 4, 15, 12, 0)
    # March in full; April 1-15 (15 of 30 days, the ending day counted as used): 1500. Nothing after.
    assert _base_fees() == {f"sub:{sub.pk}:base:2026-03-01": 3000, f"sub:{sub.pk}:base:2026-04-01": 1500}


def test_ending_at_in_the_past_of_the_activation_job_terminates_at_ending_at(billing):
    plan = billing.plan("pro", amount_cents=3000)
    billing.customer()
    with time_machine.travel(at(2026, 3, 1, 0, 0), tick=False):
        sub = subscription_create(
            service=billing.service,
            request=SubscriptionRequest(
                external_id="s1", external_customer_id="acme", plan=plan, ending_at=at(2026, 3, 20, 8, 0)
            ),
        )
    assert subscription_activate_due(now=at(2026, 3, 19)) == 0
    assert Subscription.objects.get(pk=sub.pk).status == "active"
    assert subscription_activate_due(now=at(2026, 3, 25)) == 1
    sub.refresh_from_db()
    assert (sub.status, sub.terminated_at) == ("terminated", at(2026, 3, 20, 8, 0))


@pytest.mark.parametrize("change", ["upgrade", "downgrade"])
def test_plan_change_keeps_anchor_billing_time_and_ending_at(billing, change):
    """Lago: the successor keeps subscription_at, billing_time and ending_at of the subscription it replaces,
    whatever defaults the plan-change request carried."""
    low = billing.plan("low", amount_cents=1000)
    high = billing.plan("high", amount_cents=5000)
    billing.customer()
    first, second = (low, high) if change == "upgrade" else (high, low)
    ending = at(2027, 1, 31, 0, 0)
    with time_machine.travel(at(2026, 1, 31, 9, 0), tick=False):
        current = subscription_create(
            service=billing.service,
            request=SubscriptionRequest(
                external_id="s1", external_customer_id="acme", plan=first, billing_time="anniversary",
                ending_at=ending,
            ),
        )
    with time_machine.travel(at(2026, 3, 10), tick=False):
        successor = subscription_create(
            service=billing.service,
            request=SubscriptionRequest(external_id="s1", external_customer_id="acme", plan=second),
        )
    assert successor.pk != current.pk and successor.previous_subscription_id == current.pk
    assert successor.subscription_at == current.subscription_at
    assert successor.billing_time == "anniversary"
    assert successor.ending_at == ending
    if change == "downgrade":
        # Starts when the anniversary period in course ends (Mar 31), not on the anchor.
        assert successor.status == "pending"
        assert subscription_activate_due(now=at(2026, 3, 30, 23, 0)) == 0
        assert subscription_activate_due(now=at(2026, 3, 31, 0, 1)) == 1
        successor.refresh_from_db()
        assert successor.started_at == at(2026, 3, 31, 0, 0)
    else:
        assert successor.started_at == at(2026, 3, 10)


def test_upgraded_anniversary_subscription_keeps_billing_on_its_anniversary(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    low = billing.plan("low", amount_cents=3100)
    high = billing.plan("high", amount_cents=6200)
    billing.customer()
    billing.subscribe("s1", low, billing_time="anniversary", when=at(2026, 1, 15, 9, 0))
    with time_machine.travel(at(2026, 3, 20), tick=False):
        new = subscription_create(
            service=billing.service,
            request=SubscriptionRequest(external_id="s1", external_customer_id="acme", plan=high),
        )
    periods_close(as_of=at(2026, 4, 16))
    days = sorted(Invoice.objects.values_list("issuing_date", flat=True).distinct())
    # The new plan's period ends on the old anniversary (Apr 15), as the old plan's did.
    assert Fee.objects.get(subscription=new, fee_type="subscription").to_datetime == at(2026, 4, 15, 0, 0)
    assert str(days[-1]) == "2026-04-15"


@pytest.mark.parametrize("path", ["batch", "one_by_one"])
def test_each_close_writer_applies_due_plan_changes_under_its_lock(billing, settings, path):
    """A downgrade that came due after the run's own transitions (a race) is applied by the writer itself."""
    from apps.invoicing.close import close_batch, close_customer

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    big = billing.plan("big", amount_cents=5000, pay_in_advance=True)
    small = billing.plan("small", amount_cents=2000, pay_in_advance=True)
    link = billing.customer()
    old = billing.subscribe("s1", big, when=at(2026, 3, 1, 0, 0))
    new = billing.subscribe("s1", small, when=at(2026, 3, 10))
    periods_close(as_of=at(2026, 3, 1, 1, 0))
    as_of = at(2026, 4, 1, 1, 0)
    if path == "batch":
        close_batch(customer_ids=[link.customer_id], as_of=as_of)
    else:
        close_customer(customer_id=link.customer_id, as_of=as_of)
    assert _base_fees() == {f"sub:{old.pk}:base:2026-03-01": 5000, f"sub:{new.pk}:base:2026-04-01": 2000}


# --------------------------------------------------------------------------- defect 7: the usage cut-off


def _ingest(billing, tid, when, gb, *, now, external_subscription_id="s1"):
    from apps.usage.services import usage_events_ingest
    from apps.usage.validation import EventIn

    return usage_events_ingest(
        service=billing.service,
        events=[EventIn(transaction_id=tid, external_subscription_id=external_subscription_id, code="gb",
                        timestamp=int(when.timestamp()), properties={"gb": gb})],
        now=now,
    )


@pytest.mark.parametrize("batch_min", [1, 10_000], ids=["batched", "one_by_one"])
def test_in_advance_only_invoice_does_not_move_the_usage_cut_off(billing, settings, batch_min):
    """The first invoice of a pay-in-advance plan bills the base fee only: usage of that month is not late."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    settings.INVOICE_CLOSE_BATCH_MIN = batch_min
    metric = billing.metric()
    plan = billing.plan(amount_cents=1000, pay_in_advance=True, charges=[(metric, "standard", {"amount": "1"}, {})])
    billing.customer()
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 3, 1, 1, 0))
    first = Invoice.objects.get()
    assert first.status == "finalized" and first.fees.get().fee_type == "subscription"
    sub.refresh_from_db()
    assert sub.usage_billed_until is None or sub.usage_billed_until <= at(2026, 3, 1, 0, 0)

    result = _ingest(billing, "t1", at(2026, 3, 10), "7", now=at(2026, 3, 10, 11))
    assert not result.items[0].is_late
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    april = Invoice.objects.exclude(pk=first.pk).get()
    charge = april.fees.get(fee_type="charge")
    assert (charge.units, charge.amount_cents, charge.is_adjustment) == (7, 700, False)
    assert not Fee.objects.filter(is_adjustment=True).exists()
    period = first.billing_periods.get()
    assert period.charges_from_datetime == period.charges_to_datetime  # no usage billed on it


# --------------------------------------------------------------------------- defect 8: one invoice per billing day


@pytest.mark.parametrize("batch_min", [1, 10_000], ids=["batched", "one_by_one"])
def test_late_usage_joins_its_period_invoice_whenever_the_close_runs(billing, settings, batch_min):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    settings.INVOICE_CLOSE_BATCH_MIN = batch_min
    metric = billing.metric()
    plan = billing.plan(amount_cents=1000, charges=[(metric, "standard", {"amount": "1"}, {})])
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    assert _ingest(billing, "late", at(2026, 3, 20), "4", now=at(2026, 4, 10)).items[0].is_late
    # A close in mid-April has no period of s1 to bill: the late usage waits for April's invoice.
    assert periods_close(as_of=at(2026, 4, 15)).invoices_count == 0
    # April's close runs two days late.
    periods_close(as_of=at(2026, 5, 3, 9, 0))

    april = Invoice.objects.exclude(issuing_date="2026-04-01").get()
    assert str(april.issuing_date) == "2026-05-01"
    assert {(fee.fee_type, fee.is_adjustment, fee.amount_cents) for fee in april.fees.all()} == {
        ("subscription", False, 1000), ("charge", False, 0), ("charge", True, 400),
    }
    assert periods_close(as_of=at(2026, 5, 3, 10, 0)).invoices_count == 0


def test_late_usage_of_a_terminated_subscription_is_billed_at_the_next_close(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    plan = billing.plan(amount_cents=1000, charges=[(metric, "standard", {"amount": "1"}, {})])
    billing.customer()
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    billing.terminate(sub, when=at(2026, 3, 31, 12, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    assert _ingest(billing, "late", at(2026, 3, 20), "4", now=at(2026, 4, 10)).items[0].is_late
    periods_close(as_of=at(2026, 4, 15))
    adjustment = Fee.objects.get(is_adjustment=True)
    assert adjustment.amount_cents == 400 and str(adjustment.invoice.issuing_date) == "2026-04-15"


# --------------------------------------------------------------------------- defect 4: in-advance credits


def _advance_march(billing):
    plan = billing.plan("adv", amount_cents=3000, pay_in_advance=True)
    link = billing.customer()
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    periods_close(as_of=at(2026, 3, 1, 1, 0))
    return link, sub, Invoice.objects.get()


@pytest.mark.parametrize("batch_min", [1, 10_000], ids=["batched", "one_by_one"])
def test_terminated_in_advance_subscription_is_credited_by_a_credit_note_not_a_negative_invoice(
    billing, settings, batch_min
):
    from apps.invoicing.models import CreditNote

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    settings.INVOICE_CLOSE_BATCH_MIN = batch_min
    _, sub, march = _advance_march(billing)
    billing.terminate(sub, when=at(2026, 3, 10, 15, 0))
    periods_close(as_of=at(2026, 3, 10, 16, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))

    assert Invoice.objects.count() == 1  # nothing else to bill: no invoice for the credit
    assert not Fee.objects.filter(amount_cents__lt=0).exists()
    note = CreditNote.objects.get()
    # 31 days, 10 used (the termination day counts): 3000 × 21 / 31 = 2032.26 -> 2032, HST 13% 264.16 -> 264
    assert (note.invoice_id, note.close_key, note.subscription_id) == (march.pk, f"sub:{sub.pk}:credit:2026-03-01", sub.pk)
    assert (note.sub_total_excluding_taxes_amount_cents, note.taxes_amount_cents) == (2032, 264)
    # March is unpaid: the credit settles that much of it (as Odoo reconciles the note), no credit is handed out.
    assert (note.offset_amount_cents, note.credit_amount_cents, note.refund_amount_cents, note.balance_amount_cents) \
        == (2296, 0, 0, 0)
    march.refresh_from_db()
    assert (march.total_amount_cents, march.total_due_amount_cents) == (3390, 3390 - 2296)
    assert note.reason == "order_cancellation" and note.created_by_close and str(note.issuing_date) == "2026-03-10"
    assert periods_close(as_of=at(2026, 4, 2)).invoices_count == 0
    assert CreditNote.objects.count() == 1


def test_termination_credit_skip_issues_nothing(billing, settings):
    from apps.invoicing.models import CreditNote

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    _, sub, _ = _advance_march(billing)
    Subscription.objects.filter(pk=sub.pk).update(on_termination_credit_note="skip")
    billing.terminate(sub, when=at(2026, 3, 10, 15, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    assert not CreditNote.objects.exists() and Invoice.objects.count() == 1


def test_termination_credit_never_exceeds_what_is_left_on_the_fee(billing, settings):
    from apps.invoicing.models import CreditNote
    from apps.invoicing.services import CreditNoteItemIn, credit_note_create

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    _, sub, march = _advance_march(billing)
    fee = march.fees.get()
    credit_note_create(invoice_id=march.pk, items=[CreditNoteItemIn(fee_id=fee.pk, amount_cents=2500)])
    billing.terminate(sub, when=at(2026, 3, 10, 15, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    close_note = CreditNote.objects.get(created_by_close=True)
    assert close_note.sub_total_excluding_taxes_amount_cents == 500  # 2032 due, 500 left on the fee


def test_termination_credit_waits_for_a_draft_base_invoice_and_skips_a_voided_one(billing, settings):
    from apps.invoicing.models import CreditNote
    from apps.invoicing.close import invoices_finalize_due
    from apps.invoicing.services import invoice_void

    settings.INVOICE_GRACE_PERIOD_DAYS = 3
    _, sub, march = _advance_march(billing)
    assert march.status == "draft"
    billing.terminate(sub, when=at(2026, 3, 2, 15, 0))
    periods_close(as_of=at(2026, 3, 2, 16, 0))
    assert not CreditNote.objects.exists()
    # The draft is refreshed before it is finalized: it then bills the 2 days used (3000 × 2 / 31 = 193.5 -> 194),
    # so there is nothing to credit.
    invoices_finalize_due(now=at(2026, 3, 5, 2, 0))
    periods_close(as_of=at(2026, 3, 5, 3, 0))
    march.refresh_from_db()
    assert (march.status, march.fees_amount_cents) == ("finalized", 194)
    assert not CreditNote.objects.exists()

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    other = billing.plan("adv2", amount_cents=3100, pay_in_advance=True)
    sub2 = billing.subscribe("s2", other, when=at(2026, 4, 1, 0, 0))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    april = Invoice.objects.get(fees__subscription=sub2)
    invoice_void(invoice_id=april.pk)
    billing.terminate(sub2, when=at(2026, 4, 10, 15, 0))
    periods_close(as_of=at(2026, 4, 11))
    assert not CreditNote.objects.exists()  # nothing owed on a voided invoice


def test_a_finalized_invoice_can_never_hold_a_negative_total(billing, settings):
    from django.db import IntegrityError, transaction

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    _, _, march = _advance_march(billing)
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=march.pk).update(total_amount_cents=-1)


def test_termination_credit_refund_refunds_what_was_paid(billing, settings, stripe_env):  # noqa: F811
    from apps.invoicing.models import CreditNote
    from apps.payments import services as payments
    from tests.integration.payments.stripe_fixtures import save_card

    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    link, sub, march = _advance_march(billing)
    save_card(stripe_env, link.customer, "pm_card_visa")
    payments.payment_collect_for_invoice(invoice_id=march.pk)
    march.refresh_from_db()
    assert march.total_paid_amount_cents == 3390
    with time_machine.travel(at(2026, 3, 10, 15, 0), tick=False):
        from apps.subscriptions.services import subscription_terminate

        subscription_terminate(subscription_id=sub.pk, on_termination_credit_note="refund")
    periods_close(as_of=at(2026, 3, 10, 16, 0))
    note = CreditNote.objects.get()
    assert (note.total_amount_cents, note.refund_amount_cents, note.credit_amount_cents) == (2296, 2296, 0)
    assert note.refund_status == "pending"
