"""Wallet alerts (Lago's usage monitoring on wallets): CRUD and their checks.

Semantics follow Lago's server (app/models/usage_monitoring/alert.rb, create_alert_service.rb,
process_alert_service.rb): one alert per type and per code on a wallet (422 `alert_already_exists`,
`value_already_exist`); up to 20 thresholds, values decimal, no duplicate, a recurring one not negative; wallet
alerts watch the value falling (`decreasing`), starting from its value when created. Each balance check
(apps/invoicing/top_ups.py: after consumption, top-ups, give-backs and by the beat) reads the four values and,
for each alert, the thresholds crossed since `previous_value` (one-time ones between the two values, recurring
ones every step below the lowest one-time threshold) send one `alert.triggered`, in the checking transaction.
"""
from __future__ import annotations

import math
import uuid
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.exceptions import NotFound, ValidationFailed

from .models import Wallet, WalletAlert

MAX_THRESHOLDS = 20  # Lago's AlertThreshold::SOFT_LIMIT


def _refuse(field: str, code: str):
    raise ValidationFailed("invalid alert", details={field: [code]})


def _thresholds(raw) -> list[dict]:
    if not raw:
        _refuse("thresholds", "value_is_mandatory")
    if not isinstance(raw, list) or len(raw) > MAX_THRESHOLDS:
        _refuse("thresholds", "too_many_thresholds")
    out = []
    for item in raw:
        if not isinstance(item, dict) or item.get("value") in (None, ""):
            _refuse("thresholds:value", "value_is_mandatory")
        value = item["value"]
        try:
            if isinstance(value, bool):
                raise InvalidOperation
            amount = Decimal(repr(value) if isinstance(value, float) else str(value))
        except InvalidOperation:
            _refuse("thresholds:value", "value_is_invalid")
        if not amount.is_finite():
            _refuse("thresholds:value", "value_is_invalid")
        recurring = bool(item.get("recurring"))
        if recurring and amount <= 0:
            _refuse("thresholds:value", "recurring_value_is_negative")
        out.append({"code": item.get("code"), "value": format(amount.normalize(), "f"), "recurring": recurring})
    values = [(t["value"], t["recurring"]) for t in out]
    if len(set(values)) != len(values):
        _refuse("thresholds", "duplicate_threshold_values")
    return out


def wallet_values(wallet: Wallet, *, usage_cents: int) -> dict[str, Decimal]:
    """The four values wallet alerts watch: cents for the amounts, credits otherwise (Lago's find_value)."""
    ongoing = wallet.balance_amount_cents - usage_cents
    return {
        WalletAlert.AlertType.BALANCE_AMOUNT: Decimal(wallet.balance_amount_cents),
        WalletAlert.AlertType.CREDITS_BALANCE: wallet.credits_of(wallet.balance_amount_cents),
        WalletAlert.AlertType.ONGOING_BALANCE_AMOUNT: Decimal(ongoing),
        WalletAlert.AlertType.CREDITS_ONGOING_BALANCE: wallet.credits_of(ongoing),
    }


@transaction.atomic
def wallet_alerts_create(*, wallet: Wallet, items: list[dict], usage_cents: int) -> list[WalletAlert]:
    """Create alerts on the wallet (Lago's POST, one or a batch: all or none). Each starts from the wallet's
    current value (it watches it fall)."""
    wallet = Wallet.objects.select_for_update().get(pk=wallet.pk)
    values = wallet_values(wallet, usage_cents=usage_cents)
    created = []
    for item in items:
        alert_type = item.get("alert_type")
        if not alert_type:
            raise ValidationFailed("invalid alert", details={"alert_type": ["value_is_mandatory", "value_is_invalid"]})
        if alert_type not in WalletAlert.AlertType.values:
            _refuse("alert_type", "invalid_type")
        thresholds = _thresholds(item.get("thresholds"))
        if not item.get("code"):
            _refuse("code", "value_is_mandatory")
        if WalletAlert.objects.filter(wallet=wallet, code=item["code"], deleted_at__isnull=True).exists():
            _refuse("code", "value_already_exist")
        if WalletAlert.objects.filter(wallet=wallet, alert_type=alert_type, deleted_at__isnull=True).exists():
            _refuse("base", "alert_already_exists")
        try:
            with transaction.atomic():
                created.append(WalletAlert.objects.create(
                    wallet=wallet, alert_type=alert_type, code=item["code"], name=item.get("name") or "",
                    thresholds=thresholds, previous_value=values[alert_type]))
        except IntegrityError:
            _refuse("base", "alert_already_exists")
    return created


def wallet_alert_get(*, wallet: Wallet, code: str) -> WalletAlert:
    found = WalletAlert.objects.filter(wallet=wallet, code=code, deleted_at__isnull=True).first()
    if found is None:
        raise NotFound("alert")
    return found


@transaction.atomic
def wallet_alert_update(*, alert: WalletAlert, values: dict) -> WalletAlert:
    """Change an alert's code, name or thresholds (Lago's PUT; thresholds replaced whole when given)."""
    alert = WalletAlert.objects.select_for_update().get(pk=alert.pk)
    if values.get("thresholds"):
        alert.thresholds = _thresholds(values["thresholds"])
    if "name" in values:
        alert.name = values["name"] or ""
    if values.get("code") and values["code"] != alert.code:
        if WalletAlert.objects.filter(wallet_id=alert.wallet_id, code=values["code"],
                                      deleted_at__isnull=True).exists():
            _refuse("code", "value_already_exist")
        alert.code = values["code"]
    alert.save()
    return alert


def wallet_alert_delete(*, alert: WalletAlert) -> WalletAlert:
    """Delete an alert (Lago discards it). Idempotent."""
    WalletAlert.objects.filter(pk=alert.pk, deleted_at__isnull=True).update(deleted_at=timezone.now())
    alert.refresh_from_db()
    return alert


def wallet_alerts_delete_all(*, wallet: Wallet) -> int:
    return WalletAlert.objects.filter(wallet=wallet, deleted_at__isnull=True).update(deleted_at=timezone.now())


# --------------------------------------------------------------------------- checks (Lago's Alert#find_thresholds_crossed)


def _recurring_decreasing(previous: Decimal, current: Decimal, step: Decimal, initial: Decimal) -> list[Decimal]:
    previous_steps = math.ceil((initial - previous) / step)
    previous_recurring = initial - max(previous_steps, 1) * step
    current_steps = math.floor((initial - current) / step)
    current_recurring = initial - current_steps * step
    if previous_recurring < current_recurring:
        return []
    out, value = [], current_recurring
    while value <= previous_recurring:
        out.append(value)
        value += step
    return out


def thresholds_crossed(thresholds: list[dict], *, previous: Decimal, current: Decimal) -> list[Decimal]:
    """The threshold values a falling value crossed from `previous` to `current` (Lago's decreasing rule)."""
    crossed: list[Decimal] = []
    if current >= previous:
        return crossed
    one_time = sorted({Decimal(t["value"]) for t in thresholds if not t["recurring"]})
    recurring = next((Decimal(t["value"]) for t in thresholds if t["recurring"]), None)
    if one_time:
        if current > one_time[-1]:
            return crossed
        if previous > one_time[0]:
            crossed += [value for value in one_time if value < previous and value >= current]
    if recurring:
        crossed += _recurring_decreasing(previous, current, recurring, one_time[0] if one_time else Decimal(0))
    return sorted(set(crossed))


def wallet_alerts_check(wallet: Wallet, *, usage_cents: int) -> int:
    """Check the wallet's alerts against its values now; record `alert.triggered` for each that crossed a
    threshold; return how many. Call with the wallet locked, in the checking transaction."""
    alerts = list(WalletAlert.objects.select_for_update().filter(wallet=wallet, deleted_at__isnull=True))
    if not alerts:
        return 0
    from apps.webhooks.services import webhook_events_record

    from .representations import wallet_triggered_alert_out

    values = wallet_values(wallet, usage_cents=usage_cents)
    now = timezone.now()
    items = []
    for alert in alerts:
        current = values[alert.alert_type]
        crossed = thresholds_crossed(alert.thresholds, previous=alert.previous_value, current=current)
        if crossed:
            items.append((wallet_triggered_alert_out(alert, lago_id=uuid.uuid4(), current=current, crossed=crossed,
                                                     at=now), [wallet.service_id]))
        alert.previous_value, alert.last_processed_at = current, now
        alert.save(update_fields=["previous_value", "last_processed_at", "updated_at"])
    if items:
        webhook_events_record(event_type="alert.triggered", object_type="triggered_alert", items=items)
    return len(items)
