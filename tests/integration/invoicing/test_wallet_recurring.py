"""Recurring top-ups (Lago's recurring_transaction_rules, issue 20): threshold rules fire when the close's
consumption takes the ongoing balance to or below the threshold, once per crossing; interval rules once per
anniversary in the customer's time zone; both under the wallet's lock, so a second or concurrent run adds nothing."""
from __future__ import annotations

import threading
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from django.db import connection

from apps.invoicing.close import periods_close
from apps.invoicing.models import Invoice, RecurringTransactionRule, Wallet, WalletTransaction
from apps.invoicing.recurring import interval_due, recurring_rules_validate, rule_credits
from apps.invoicing.top_ups import wallet_balance_check, wallets_interval_top_up, wallets_recurring_top_up
from apps.invoicing.services import invoice_void
from apps.invoicing.wallets import wallet_create, wallet_update

from .conftest import at

pytestmark = pytest.mark.django_db


def wallet(billing, link, granted: str, rules: list[dict], **values) -> Wallet:
    created, _ = wallet_create(service=billing.service, link=link, values={
        "currency": "CAD", "rate_amount": Decimal("1"), "granted_credits": Decimal(granted),
        "recurring_transaction_rules": rules, **values})
    return created


def top_ups(tokens: Wallet) -> list[tuple]:
    return list(WalletTransaction.objects.filter(wallet=tokens, reason="top_up").exclude(source="manual")
                .order_by("id").values_list("source", "transaction_status", "status", "amount_cents"))


def test_a_close_that_takes_the_balance_to_the_threshold_tops_it_up_once(billing, settings,
                                                                         django_capture_on_commit_callbacks):
    """50 credits, a 100.00 + 13 % invoice takes them all: the ongoing balance, 0, is at or below 10, so the rule
    grants its 20 credits once the close commits; checking again (the beat, a duplicate task) adds nothing."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    link = billing.customer()
    billing.subscribe("s1", billing.plan(amount_cents=10000), when=at(2026, 3, 1, 0, 0))
    tokens = wallet(billing, link, "50", [{"trigger": "threshold", "threshold_credits": "10",
                                           "granted_credits": "20", "transaction_name": "Refill"}])
    assert top_ups(tokens) == []  # 50 is above the threshold
    with django_capture_on_commit_callbacks(execute=True):
        periods_close(as_of=at(2026, 4, 1, 2, 0))
    tokens.refresh_from_db()
    assert tokens.balance_amount_cents == 2000
    assert top_ups(tokens) == [("threshold", "granted", "settled", 2000)]
    assert WalletTransaction.objects.get(wallet=tokens, source="threshold").name == "Refill"
    assert wallet_balance_check(wallet_id=tokens.pk) == []
    assert wallets_recurring_top_up()["threshold"] == 0
    assert top_ups(tokens) == [("threshold", "granted", "settled", 2000)]


def test_the_rule_fires_again_only_after_the_balance_rose_above_the_threshold(billing, settings):
    """Granted 5 credits when at 10 or below: from 8, the top-up leaves 13; the next consumption (to 2) is a new
    crossing. A fixed top-up too small to lift the balance (from 2 to 7) is not repeated until it rises again."""
    link = billing.customer()
    tokens = wallet(billing, link, "8", [{"trigger": "threshold", "threshold_credits": "10", "granted_credits": "5"}])
    assert len(wallet_balance_check(wallet_id=tokens.pk)) == 1
    assert wallet_balance_check(wallet_id=tokens.pk) == []  # 13: above, re-armed
    Wallet.objects.filter(pk=tokens.pk).update(balance_amount_cents=200)  # as a consumption would
    assert len(wallet_balance_check(wallet_id=tokens.pk)) == 1  # a new crossing: 2 -> 7
    assert wallet_balance_check(wallet_id=tokens.pk) == []  # 7 is still below, but this crossing has fired
    tokens.refresh_from_db()
    assert tokens.balance_amount_cents == 700
    assert [row[3] for row in top_ups(tokens)] == [500, 500]


def test_paid_threshold_top_ups_count_what_is_pending_and_a_voided_one_is_asked_again(billing):
    """Lago's compute_fixed_top_up_amount: 5 paid credits per step, threshold 10, balance 0: the gap (10) is
    covered by 15 credits (three steps), bought on one credit invoice. While it is pending, the rule does not
    fire again; voided unpaid (the card declined), it is asked again at the next check."""
    link = billing.customer()
    tokens = wallet(billing, link, "0", [{"trigger": "threshold", "threshold_credits": "10", "paid_credits": "5"}])
    [row] = wallet_balance_check(wallet_id=tokens.pk)
    assert (row.status, row.transaction_status, row.amount_cents, row.source) == ("pending", "purchased", 1500,
                                                                                   "threshold")
    assert Invoice.objects.get(pk=row.invoice_id).total_amount_cents == 1500
    assert wallet_balance_check(wallet_id=tokens.pk) == []
    invoice_void(invoice_id=row.invoice_id)
    [again] = wallet_balance_check(wallet_id=tokens.pk)
    assert (again.status, again.amount_cents) == ("pending", 1500)


def test_lago_s_amounts_for_fixed_and_target_rules():
    fixed = RecurringTransactionRule(trigger="threshold", method="fixed", threshold_credits=Decimal("10"),
                                     paid_credits=Decimal("5"), granted_credits=Decimal("2"))
    assert rule_credits(fixed, ongoing=Decimal("9")) == (Decimal("5"), Decimal("2"))  # gap -1: one step
    assert rule_credits(fixed, ongoing=Decimal("0")) == (Decimal("10"), Decimal("2"))  # gap 8: two steps
    assert rule_credits(fixed, ongoing=Decimal("-20"), pending=Decimal("5")) == (Decimal("25"), Decimal("2"))
    target = RecurringTransactionRule(trigger="interval", method="target", target_ongoing_balance=Decimal("100"),
                                      grants_target_top_up=False)
    assert rule_credits(target, ongoing=Decimal("30.5")) == (Decimal("69.5"), Decimal("0"))
    assert rule_credits(target, ongoing=Decimal("120")) == (Decimal("0"), Decimal("0"))
    target.grants_target_top_up = True
    assert rule_credits(target, ongoing=Decimal("30.5")) == (Decimal("0"), Decimal("69.5"))


@pytest.mark.django_db(transaction=True)
def test_two_checks_at_once_fire_the_rule_once(billing):
    link = billing.customer()
    tokens = wallet(billing, link, "20", [{"trigger": "threshold", "threshold_credits": "10", "granted_credits": "3"}])
    Wallet.objects.filter(pk=tokens.pk).update(balance_amount_cents=0)  # as a consumption would
    barrier = threading.Barrier(2)
    results, errors = [], []

    def check() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(len(wallet_balance_check(wallet_id=tokens.pk)))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=check) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and sorted(results) == [0, 1]
    tokens.refresh_from_db()
    assert tokens.balance_amount_cents == 300


def test_a_monthly_rule_fires_on_its_anniversary_once_a_day_in_the_customer_s_time_zone(billing):
    """Started on 31 January (Toronto): due on 28 February and 31 March, once each day however often the beat
    runs; not on other days, nor before it starts. A target rule tops the balance up to its target."""
    link = billing.customer()
    tokens = wallet(billing, link, "10", [{"trigger": "interval", "interval": "monthly", "method": "target",
                                           "target_ongoing_balance": "25", "grants_target_top_up": True,
                                           "started_at": "2026-01-31T12:00:00-05:00"}])
    Wallet.objects.filter(pk=tokens.pk).update(created_at=at(2026, 1, 20))
    assert wallets_interval_top_up(now=at(2026, 2, 27, 23, 0)) == 0
    assert wallets_interval_top_up(now=at(2026, 2, 28, 1, 0)) == 1
    assert wallets_interval_top_up(now=at(2026, 2, 28, 23, 0)) == 0  # same local day
    assert wallets_interval_top_up(now=datetime(2026, 3, 1, 4, 0, tzinfo=timezone.utc)) == 0  # still 28 Feb there
    tokens.refresh_from_db()
    assert tokens.balance_amount_cents == 2500
    Wallet.objects.filter(pk=tokens.pk).update(balance_amount_cents=400)
    assert wallets_interval_top_up(now=at(2026, 3, 31, 9, 0)) == 1
    tokens.refresh_from_db()
    assert tokens.balance_amount_cents == 2500
    assert [row[:2] + (row[3],) for row in top_ups(tokens)] == [("interval", "granted", 1500),
                                                               ("interval", "granted", 2100)]


def test_interval_anniversaries():
    assert interval_due("weekly", start=date(2026, 3, 2), today=date(2026, 3, 16))
    assert not interval_due("weekly", start=date(2026, 3, 2), today=date(2026, 3, 17))
    assert interval_due("monthly", start=date(2026, 1, 30), today=date(2026, 2, 28))
    assert not interval_due("monthly", start=date(2026, 1, 28), today=date(2026, 2, 27))
    assert interval_due("quarterly", start=date(2026, 11, 15), today=date(2027, 2, 15))
    assert not interval_due("quarterly", start=date(2026, 11, 15), today=date(2027, 1, 15))
    assert interval_due("semiannual", start=date(2026, 3, 31), today=date(2026, 9, 30))
    assert interval_due("yearly", start=date(2024, 2, 29), today=date(2026, 2, 28))
    assert not interval_due("yearly", start=date(2024, 2, 29), today=date(2026, 3, 1))


def test_rules_are_checked_as_lago_does():
    def code(rules):
        with pytest.raises(Exception) as refused:
            recurring_rules_validate(rules)
        return refused.value.details

    assert code([{"trigger": "interval", "interval": "monthly"}] * 2) == {
        "recurring_transaction_rules": ["invalid_number_of_recurring_rules"]}
    for bad in ({"trigger": "interval"}, {"trigger": "threshold"}, {"trigger": "sometimes"},
                {"trigger": "threshold", "threshold_credits": "10", "method": "target", "target_ongoing_balance": "5"},
                {"trigger": "interval", "interval": "weekly", "method": "target"},
                {"trigger": "interval", "interval": "weekly", "grants_target_top_up": True},
                {"trigger": "interval", "interval": "weekly", "paid_credits": "-1"},
                {"trigger": "interval", "interval": "weekly", "expiration_at": "2000-01-01T00:00:00Z"},
                {"trigger": "interval", "interval": "weekly", "transaction_metadata": [{"value": "x"}]}):
        assert code([bad]) == {"recurring_transaction_rules": ["invalid_recurring_rule"]}, bad


def test_update_keeps_the_rule_it_names_and_terminates_the_others(billing):
    link = billing.customer()
    tokens = wallet(billing, link, "10", [{"trigger": "interval", "interval": "weekly"}], paid_credits=None)
    [rule] = RecurringTransactionRule.objects.filter(wallet=tokens)
    assert (rule.paid_credits, rule.granted_credits) == (Decimal("0"), Decimal("10"))  # the wallet's, as Lago
    wallet_update(wallet=tokens, values={"recurring_transaction_rules": [
        {"lago_id": str(rule.lago_id), "trigger": "interval", "interval": "monthly", "granted_credits": "3"}]})
    rule.refresh_from_db()
    assert (rule.status, rule.interval, rule.granted_credits) == ("active", "monthly", Decimal("3"))
    wallet_update(wallet=tokens, values={"recurring_transaction_rules": [
        {"trigger": "threshold", "threshold_credits": "1", "granted_credits": "1"}]})
    assert sorted(RecurringTransactionRule.objects.filter(wallet=tokens).values_list("trigger", "status")) == [
        ("interval", "terminated"), ("threshold", "active")]


def test_depleted_ongoing_balance_is_sent_once_per_depletion(billing, settings, django_capture_on_commit_callbacks):
    """A close takes the wallet to 0: `wallet.depleted_ongoing_balance` once (Lago's Wallet body, to the wallet's
    service's endpoint, delivered like every event); checks that find it still depleted send nothing; a top-up
    makes it positive, and the next depletion is announced again."""
    from apps.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

    endpoint = WebhookEndpoint.objects.create(service=billing.service, webhook_url="https://hooks.example.com/x")
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    link = billing.customer()
    billing.subscribe("s1", billing.plan(amount_cents=10000), when=at(2026, 3, 1, 0, 0))
    tokens = wallet(billing, link, "50", [])

    def depleted():
        return list(WebhookEvent.objects.filter(event_type="wallet.depleted_ongoing_balance").order_by("id"))

    with django_capture_on_commit_callbacks(execute=True):
        periods_close(as_of=at(2026, 4, 1, 2, 0))
    [event] = depleted()
    assert (event.payload["object_type"], event.payload["wallet"]["lago_id"], event.payload["wallet"]["balance_cents"],
            event.payload["wallet"]["ongoing_balance_cents"]) == ("wallet", str(tokens.lago_id), 0, 0)
    assert WebhookDelivery.objects.filter(event=event, endpoint=endpoint).count() == 1
    assert wallet_balance_check(wallet_id=tokens.pk) == [] and wallets_recurring_top_up() and len(depleted()) == 1
    tokens.refresh_from_db()
    assert tokens.depleted_ongoing_balance

    from apps.invoicing.wallets import wallet_transaction_create

    with django_capture_on_commit_callbacks(execute=True):
        wallet_transaction_create(wallet=tokens, values={"granted_credits": Decimal("5")})
    tokens.refresh_from_db()
    assert not tokens.depleted_ongoing_balance
    with django_capture_on_commit_callbacks(execute=True):
        periods_close(as_of=at(2026, 5, 1, 2, 0))
    assert len(depleted()) == 2
