"""Recurring top-ups of wallets (Lago's `recurring_transaction_rules`): set on wallet create and update, fired by
the beat and after finalization (apps/invoicing/top_ups.py).

Semantics follow Lago's server (app/models/recurring_transaction_rule.rb, app/services/wallets/
recurring_transaction_rules/*, threshold_top_up_service.rb, create_interval_wallet_transactions_service.rb):

- One rule per wallet (422 `invalid_number_of_recurring_rules`); a rule Lago would refuse answers 422
  `invalid_recurring_rule` on `recurring_transaction_rules`. On create, a `fixed` rule without credits takes the
  wallet's `paid_credits`/`granted_credits`. On update, a rule named by `lago_id` is changed, one without is
  created, and the wallet's other rules are terminated.
- `fixed`: `paid_credits` bought (a credit invoice collected by Stripe, credited once paid) and `granted_credits`
  granted; for a threshold rule the paid credits are multiplied until they lift the ongoing balance, with what is
  pending and granted, above the threshold (Lago's `compute_fixed_top_up_amount`). `target`: the gap between the
  ongoing balance and `target_ongoing_balance`, paid, or granted with `grants_target_top_up`.
- `interval`: on the anniversary of `started_at` (else the wallet's creation) in the customer's time zone, weekly,
  monthly (the last day of a short month stands for the days it lacks), quarterly, semiannual or yearly; never on
  the wallet's first day. Once per local day: the rule's `last_interval_on`, claimed under the wallet's lock.
- `threshold`: when the ongoing balance (the balance less current usage) plus the pending paid credits is at or
  below `threshold_credits`. Once per crossing: the rule is disarmed when it fires and armed again only when the
  balance is back above the threshold (or its paid top-up failed, so that a declined card is asked again at the
  next check, as Lago retries). Checked after every finalization that consumed the wallet and by the beat (which
  sees usage as it grows), each time under the customer's then the wallet's row lock: two runs at once, or one
  run twice, fire once.

Deviations: Lago's paid top-up limits, payment methods, invoice custom sections and purchase order numbers are not
built; rules are kept for every wallet (Lago's premium licence check does not apply).
"""
from __future__ import annotations

import calendar
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.core.exceptions import ValidationFailed
from apps.core.queue import task_send_on_commit

from .models import RecurringTransactionRule as Rule
from .models import Wallet

FIELD = "recurring_transaction_rules"
ZERO = Decimal(0)


class _Invalid(Exception):
    pass


# --------------------------------------------------------------------------- validation


def _credits(value) -> Decimal | None:
    """A credits amount as Lago takes it (a decimal string; a JSON number from clients too); None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Invalid
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation:
        raise _Invalid from None
    if not amount.is_finite() or amount < 0 or amount >= Decimal(10) ** 25:
        raise _Invalid
    return amount.quantize(Decimal("0.00001"), ROUND_HALF_UP)  # Lago's column: 5 decimals


def _instant(value) -> datetime | None:
    if value is None:
        return None
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        raise _Invalid
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, timezone.utc)


def _metadata(value) -> list:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 5:
        raise _Invalid
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"] \
                or len(item["key"]) > 255 or not isinstance(item.get("value"), (str, type(None))):
            raise _Invalid
    return [{"key": item["key"], "value": item.get("value")} for item in value]


def _rule_values(raw: dict, *, now: datetime) -> dict:
    """Lago's ValidateService on one rule: return its normalised values, or raise _Invalid."""
    if not isinstance(raw, dict):
        raise _Invalid
    trigger, method = raw.get("trigger"), raw.get("method") or Rule.Method.FIXED
    if method not in Rule.Method.values:
        raise _Invalid
    values = {"trigger": trigger, "method": method}
    if trigger == Rule.Trigger.INTERVAL:
        if raw.get("interval") not in Rule.Interval.values:
            raise _Invalid
        values["interval"] = raw["interval"]
        values["threshold_credits"] = _credits(raw.get("threshold_credits")) or ZERO
    elif trigger == Rule.Trigger.THRESHOLD:
        threshold = _credits(raw.get("threshold_credits"))
        if threshold is None:
            raise _Invalid
        values["interval"], values["threshold_credits"] = "", threshold
    else:
        raise _Invalid
    target = _credits(raw.get("target_ongoing_balance"))
    if method == Rule.Method.TARGET:
        if target is None:
            raise _Invalid
        if trigger == Rule.Trigger.THRESHOLD and target < values["threshold_credits"]:
            raise _Invalid
    values["target_ongoing_balance"] = target
    if "paid_credits" in raw:
        values["paid_credits"] = _credits(raw["paid_credits"])
    if "granted_credits" in raw:
        values["granted_credits"] = _credits(raw["granted_credits"])
    grants = raw.get("grants_target_top_up")
    if grants is not None and (method != Rule.Method.TARGET or not isinstance(grants, bool)):
        raise _Invalid
    values["grants_target_top_up"] = bool(grants) if method == Rule.Method.TARGET else None
    values["started_at"] = _instant(raw.get("started_at"))
    expiration_at = _instant(raw.get("expiration_at"))
    if expiration_at is not None and expiration_at <= now:
        raise _Invalid
    values["expiration_at"] = expiration_at
    if "invoice_requires_successful_payment" in raw and raw["invoice_requires_successful_payment"] is not None:
        if not isinstance(raw["invoice_requires_successful_payment"], bool):
            raise _Invalid
        values["invoice_requires_successful_payment"] = raw["invoice_requires_successful_payment"]
    values["transaction_metadata"] = _metadata(raw.get("transaction_metadata"))
    name = raw.get("transaction_name")
    if name is not None and (not isinstance(name, str) or len(name) > 255):
        raise _Invalid
    values["transaction_name"] = name or ""
    if raw.get("lago_id") is not None:
        values["lago_id"] = str(raw["lago_id"])
    return values


def recurring_rules_validate(raw_rules) -> list[dict] | None:
    """Validate the `recurring_transaction_rules` of a wallet body; return their values (None: not given).
    Raise Lago's 422 on `recurring_transaction_rules` before anything is written."""
    if raw_rules is None:
        return None
    if not isinstance(raw_rules, list):
        raise ValidationFailed("invalid wallet", details={FIELD: ["invalid_recurring_rule"]})
    if len(raw_rules) > 1:
        raise ValidationFailed("invalid wallet", details={FIELD: ["invalid_number_of_recurring_rules"]})
    now = timezone.now()
    try:
        return [_rule_values(raw, now=now) for raw in raw_rules]
    except _Invalid:
        raise ValidationFailed("invalid wallet", details={FIELD: ["invalid_recurring_rule"]}) from None


# --------------------------------------------------------------------------- writes


def recurring_rules_create(*, wallet: Wallet, rules: list[dict], paid_credits: Decimal | None,
                           granted_credits: Decimal | None) -> list[Rule]:
    """Write a new wallet's rules (validated by `recurring_rules_validate`). A `fixed` rule given no credits takes
    the wallet's own (Lago). Call in the wallet's creating transaction."""
    created = []
    for values in rules:
        values = dict(values)
        values.pop("lago_id", None)
        if values["method"] == Rule.Method.FIXED and values.get("paid_credits") is None \
                and values.get("granted_credits") is None:
            values["paid_credits"], values["granted_credits"] = paid_credits, granted_credits
        created.append(_rule_create(wallet, values))
    _threshold_check_on_commit(wallet, created)
    return created


def _rule_create(wallet: Wallet, values: dict) -> Rule:
    values.setdefault("invoice_requires_successful_payment", wallet.invoice_requires_successful_payment)
    for field in ("paid_credits", "granted_credits"):
        if values.get(field) is None:
            values[field] = ZERO
    return Rule.objects.create(wallet=wallet, **values)


def recurring_rules_update(*, wallet: Wallet, rules: list[dict]) -> list[Rule]:
    """Apply a wallet update's rules (Lago's RecurringTransactionRules::UpdateService): a rule named by an active
    `lago_id` is changed, others are created, the wallet's remaining active rules are terminated. Call with the
    wallet locked, in the updating transaction."""
    now = timezone.now()
    active = {str(rule.lago_id): rule for rule in Rule.objects.select_for_update().filter(
        wallet=wallet, status=Rule.Status.ACTIVE)}
    kept = {values["lago_id"] for values in rules if values.get("lago_id") in active}
    for lago_id, rule in active.items():
        if lago_id not in kept:  # first: one active rule per wallet (a unique index)
            rule.status, rule.terminated_at = Rule.Status.TERMINATED, now
            rule.save(update_fields=["status", "terminated_at", "updated_at"])
    written = []
    for values in rules:
        values = dict(values)
        rule = active.get(values.pop("lago_id", None))
        if rule is None:
            written.append(_rule_create(wallet, values))
            continue
        changed = [field for field, value in values.items() if getattr(rule, field) != value]
        for field in changed:
            setattr(rule, field, values[field])
        if {"trigger", "threshold_credits", "method", "target_ongoing_balance"} & set(changed):
            rule.threshold_armed = True  # a new threshold is a new crossing to watch
            changed.append("threshold_armed")
        if changed:
            rule.save(update_fields=[*changed, "updated_at"])
        written.append(rule)
    _threshold_check_on_commit(wallet, written)
    return written


def recurring_rules_of(wallet: Wallet) -> list[Rule]:
    """The rules Lago shows on a wallet: active and not expired (prefetched as `active_recurring_rules` by the
    wallet selectors, else read here)."""
    rules = getattr(wallet, "active_recurring_rules", None)
    if rules is None:
        rules = list(Rule.objects.filter(wallet=wallet, status=Rule.Status.ACTIVE))
    now = timezone.now()
    return [rule for rule in rules if rule.expiration_at is None or rule.expiration_at > now]


def _threshold_check_on_commit(wallet: Wallet, rules: list[Rule]) -> None:
    if any(rule.trigger == Rule.Trigger.THRESHOLD for rule in rules):
        wallets_balance_check_on_commit([wallet.pk])


def wallets_balance_check_on_commit(wallet_ids) -> None:
    """After this transaction commits, check these wallets' ongoing balances (`top_ups.wallet_balance_check`:
    the depletion webhook, the threshold rule). Call when a balance changed: consumption, a top-up, a give-back."""
    for wallet_id in sorted(set(wallet_ids)):
        # robust: the beat checks every wallet anyway, so a failed send never fails a committed change
        task_send_on_commit("apps.invoicing.tasks.wallet_balance_check_task", wallet_id, robust=True)


# --------------------------------------------------------------------------- amounts (Lago's compute_*)


def rule_credits(rule: Rule, *, ongoing: Decimal, pending: Decimal = ZERO) -> tuple[Decimal, Decimal]:
    """Return (paid, granted) credits the rule tops up now, given the wallet's ongoing balance and pending paid
    credits, both in credits (Lago's compute_paid_credits / compute_granted_credits)."""
    if rule.method == Rule.Method.TARGET:
        gap = max(rule.target_ongoing_balance - ongoing, ZERO)
        return (ZERO, gap) if rule.grants_target_top_up else (gap, ZERO)
    paid = rule.paid_credits
    if rule.trigger == Rule.Trigger.THRESHOLD and paid > 0:
        gap = rule.threshold_credits - ongoing - rule.granted_credits - pending
        if gap >= paid:
            paid = paid * (int(gap // paid) + 1)
    return paid, rule.granted_credits


# --------------------------------------------------------------------------- interval


def _last_day(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def interval_due(interval: str, *, start: date, today: date) -> bool:
    """Whether `today` is an anniversary of `start` for `interval` (Lago's SQL, in Python): a month's last day
    stands for the days it lacks (a rule started on the 31st fires on 30 April and 28 February)."""
    if interval == Rule.Interval.WEEKLY:
        return start.isoweekday() == today.isoweekday()
    day_matches = start.day == today.day or (today.day == _last_day(today) and start.day > today.day)
    if interval == Rule.Interval.MONTHLY:
        return day_matches
    if interval == Rule.Interval.QUARTERLY:
        return (today.month - start.month) % 3 == 0 and day_matches
    if interval == Rule.Interval.SEMIANNUAL:
        return (today.month - start.month) % 6 == 0 and day_matches
    if interval == Rule.Interval.YEARLY:
        return start.month == today.month and day_matches
    return False
