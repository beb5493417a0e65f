"""Wallet balance checks and recurring top-ups fired (the rules: apps/invoicing/recurring.py): the depletion
webhook and threshold rules after a finalization consumed the wallet, a top-up or a give-back, and by the beat;
interval rules by the beat. Each under the customer's then the wallet's row lock, once per depletion
(`depleted_ongoing_balance`), per crossing (`threshold_armed`) or per local day (`last_interval_on`)."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from apps.customers.models import Customer
from apps.subscriptions.periods import local_date

from .models import RecurringTransactionRule as Rule
from .models import Wallet, WalletTransaction
from .recurring import ZERO, interval_due, rule_credits
from .wallet_alerts import wallet_alerts_check
from .close.ongoing import customer_wallets_ongoing_usage
from .wallets import MAX_TOP_UP_CENTS, _top_up, cents_of


def _fire(rule: Rule, wallet: Wallet, *, paid: Decimal, granted: Decimal, source: str) -> list[WalletTransaction]:
    """Top the locked wallet up by the rule's credits (what rounds to nothing is left out)."""
    amounts = {}
    for kind, credits in (("paid_credits", paid), ("granted_credits", granted)):
        cents = cents_of(credits, rate_amount=wallet.rate_amount, currency=wallet.currency) if credits > 0 else 0
        if 0 < cents <= MAX_TOP_UP_CENTS:
            amounts[kind] = cents
    if not amounts:
        return []
    return _top_up(wallet, amounts, name=rule.transaction_name, metadata=rule.transaction_metadata, source=source)


def _depleted_announce(wallet: Wallet, *, usage_cents: int) -> None:
    """Record `wallet.depleted_ongoing_balance` (Lago's Wallet body) to the wallet's service, in this transaction."""
    from apps.webhooks.services import webhook_events_record

    from .representations import wallet_out

    webhook_events_record(event_type="wallet.depleted_ongoing_balance", object_type="wallet",
                          items=[(wallet_out(wallet, usage_cents=usage_cents), [wallet.service_id])])


def _ongoing_usage_cents(wallet: Wallet, now: datetime) -> int:
    """The wallet's ongoing usage from current usage and drafts (close.ongoing), 0 once it has ended."""
    if wallet.status != Wallet.Status.ACTIVE:
        return 0
    return customer_wallets_ongoing_usage(customer_id=wallet.customer_id, at=now).get(wallet.pk, 0)


def _ongoing_credits(wallet: Wallet, now: datetime) -> Decimal:
    return wallet.credits_of(wallet.balance_amount_cents - _ongoing_usage_cents(wallet, now))


def _locked(wallet_id: int) -> Wallet | None:
    """Lock the wallet's customer, then the wallet (the close's and the top-ups' order); None if it is gone."""
    customer_id = Wallet.objects.filter(pk=wallet_id).values_list("customer_id", flat=True).first()
    if customer_id is None:
        return None
    Customer.objects.select_for_update().get(pk=customer_id)
    return Wallet.objects.select_for_update().select_related("account_link", "customer").get(pk=wallet_id)


def _active_rule(wallet: Wallet, trigger: str, now: datetime) -> Rule | None:
    rule = Rule.objects.select_for_update().filter(wallet=wallet, status=Rule.Status.ACTIVE, trigger=trigger).first()
    if rule is None or (rule.expiration_at is not None and rule.expiration_at <= now):
        return None
    return rule


# --------------------------------------------------------------------------- threshold


@transaction.atomic
def wallet_balance_check(*, wallet_id: int, now: datetime | None = None) -> list[WalletTransaction]:
    """Check the wallet's ongoing balance (the balance less current usage): send `wallet.depleted_ongoing_balance`
    when it reaches zero or less (once per depletion, Lago's `depleted_ongoing_balance` flag, cleared when it is
    positive again), and fire its threshold rule if it is armed and the balance is at or below the threshold.
    Return the top-up transactions written. Safe to run twice, late or concurrently (row locks, the flags)."""
    now = now or timezone.now()
    wallet = _locked(wallet_id)
    if wallet is None or wallet.status != Wallet.Status.ACTIVE:
        return []
    usage_cents = _ongoing_usage_cents(wallet, now)
    ongoing_cents = wallet.balance_amount_cents - usage_cents
    if (ongoing_cents <= 0) != wallet.depleted_ongoing_balance:
        wallet.depleted_ongoing_balance = ongoing_cents <= 0
        wallet.save(update_fields=["depleted_ongoing_balance", "updated_at"])
        if wallet.depleted_ongoing_balance:
            _depleted_announce(wallet, usage_cents=usage_cents)
    wallet_alerts_check(wallet, usage_cents=usage_cents)  # Lago's alert.triggered on a crossed threshold
    rule = _active_rule(wallet, Rule.Trigger.THRESHOLD, now)
    if rule is None:
        return []
    ongoing = wallet.credits_of(ongoing_cents)
    pending = WalletTransaction.objects.filter(
        wallet=wallet, status=WalletTransaction.Status.PENDING).aggregate(total=Sum("credit_amount"))["total"] or ZERO
    if ongoing + pending > rule.threshold_credits:
        if not rule.threshold_armed:
            rule.threshold_armed = True
            rule.save(update_fields=["threshold_armed", "updated_at"])
        return []
    if not rule.threshold_armed:
        return []  # fired for this crossing already
    paid, granted = rule_credits(rule, ongoing=ongoing, pending=pending)
    rule.threshold_armed = False
    rule.save(update_fields=["threshold_armed", "updated_at"])
    return _fire(rule, wallet, paid=paid, granted=granted, source=WalletTransaction.Source.THRESHOLD)


def wallets_interval_top_up(*, now: datetime | None = None) -> int:
    """Fire the interval rules due today in their customers' time zones; return how many fired (beat task).
    Once per rule and local day, under the wallet's lock (`last_interval_on`), whoever runs it and how often."""
    now = now or timezone.now()
    candidates = (Rule.objects.filter(status=Rule.Status.ACTIVE, trigger=Rule.Trigger.INTERVAL,
                                      wallet__status=Wallet.Status.ACTIVE)
                  .select_related("wallet__customer").order_by("pk"))
    fired = 0
    for rule in candidates:
        tz = rule.wallet.customer.applicable_timezone
        today = local_date(now, tz)
        if rule.last_interval_on == today or (rule.expiration_at is not None and rule.expiration_at <= now):
            continue
        if local_date(rule.wallet.created_at, tz) == today:
            continue  # never on the wallet's first day (its creation topped it up)
        start = rule.started_at or rule.wallet.created_at
        if start > now or not interval_due(rule.interval, start=local_date(start, tz), today=today):
            continue
        if wallet_interval_top_up(rule_id=rule.pk, today=today, now=now) is not None:
            fired += 1
    return fired


@transaction.atomic
def wallet_interval_top_up(*, rule_id: int, today: date, now: datetime) -> list[WalletTransaction] | None:
    """Fire one interval rule for `today` unless it already has; return the transactions (None: not fired)."""
    wallet_id = Rule.objects.filter(pk=rule_id).values_list("wallet_id", flat=True).first()
    wallet = _locked(wallet_id) if wallet_id is not None else None
    if wallet is None or wallet.status != Wallet.Status.ACTIVE:
        return None
    rule = Rule.objects.select_for_update().get(pk=rule_id)
    if rule.status != Rule.Status.ACTIVE or rule.last_interval_on == today:
        return None
    rule.last_interval_on = today
    rule.save(update_fields=["last_interval_on", "updated_at"])
    paid, granted = rule_credits(rule, ongoing=_ongoing_credits(wallet, now))
    return _fire(rule, wallet, paid=paid, granted=granted, source=WalletTransaction.Source.INTERVAL)


def recurring_rules_expire(*, now: datetime | None = None) -> int:
    """Terminate the active rules past their `expiration_at` (Lago's TerminateRecurringTransactionRulesJob)."""
    now = now or timezone.now()
    return Rule.objects.filter(status=Rule.Status.ACTIVE, expiration_at__lte=now).update(
        status=Rule.Status.TERMINATED, terminated_at=now, updated_at=now)


def wallets_recurring_top_up(*, now: datetime | None = None) -> dict[str, int]:
    """The beat's pass: expire rules, fire the interval rules due, check every active wallet's ongoing balance
    (usage grows between closes). Each wallet in its own transaction; idempotent."""
    now = now or timezone.now()
    expired = recurring_rules_expire(now=now)
    interval = wallets_interval_top_up(now=now)
    threshold = 0
    # Every active wallet: the depletion webhook watches them all, not only those with a threshold rule.
    wallet_ids = Wallet.objects.filter(status=Wallet.Status.ACTIVE).order_by("pk").values_list("pk", flat=True)
    for wallet_id in list(wallet_ids):
        if wallet_balance_check(wallet_id=wallet_id, now=now):
            threshold += 1
    return {"expired": expired, "interval": interval, "threshold": threshold}
