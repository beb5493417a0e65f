"""Lago's subscription usage alerts (app/services/usage_monitoring/*): CRUD and evaluation.

An alert watches one value of a subscription (its period's usage amount, one metric's amount or units, its
lifetime usage amount) and sends `alert.triggered` once per rise across its thresholds: fixed ones once each,
the recurring one every `value` past the largest fixed one (Lago's `find_thresholds_crossed_increasing`). The
value last seen is kept on the alert; a new period's usage starts lower, so the next rise triggers again.

Evaluated after ingest (`progressive.usage_check_run`, one check per watched subscription) and by the usage
checks' sweep. Once per crossing: the alert rows are locked while evaluated, and `previous_value` moves in the
transaction that records the crossing and its webhook.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.catalog.models import BillableMetric
from apps.core.exceptions import NotFound, ValidationFailed
from apps.core.representations import decimal_str
from apps.customers.models import Service
from apps.subscriptions.models import Subscription

from .models import TriggeredAlert, UsageAlert, UsageAlertThreshold

ZERO = Decimal(0)
METRIC_TYPES = (UsageAlert.AlertType.METRIC_USAGE_AMOUNT, UsageAlert.AlertType.METRIC_USAGE_UNITS)


@dataclass(frozen=True)
class Crossing:
    value: Decimal
    code: str
    recurring: bool


def thresholds_crossed(
    thresholds: list[UsageAlertThreshold], *, previous: Decimal, current: Decimal
) -> list[Crossing]:
    """Lago's increasing crossing: the threshold values in (previous, current], recurring steps included."""
    if current <= previous:
        return []
    fixed = sorted({t.value for t in thresholds if not t.recurring})
    codes = {t.value: t.code for t in thresholds if not t.recurring}
    recurring = next((t for t in thresholds if t.recurring), None)
    crossed: list[Crossing] = []
    if fixed:
        if current < fixed[0]:
            return []
        if previous < fixed[-1]:
            crossed += [Crossing(value, codes[value], False) for value in fixed if previous < value <= current]
    if recurring is not None and recurring.value > 0:
        initial, step = (fixed[-1] if fixed else ZERO), recurring.value
        # The first step above `previous` (Lago rounds up, so a value exactly on a step triggers it a second time).
        first = initial + max(math.floor((previous - initial) / step) + 1, 1) * step
        last = initial + math.floor((current - initial) / step) * step
        value = first
        while value <= last:
            crossed.append(Crossing(value, recurring.code, True))
            value += step
    return sorted(crossed, key=lambda crossing: crossing.value)


def _values(subscription: Subscription, alerts: list[UsageAlert], *, at: datetime) -> dict[int, Decimal | None]:
    """Each alert's current value (None: its metric is not charged by the plan, as Lago skips it)."""
    from .progressive import lifetime_usage_state

    state = lifetime_usage_state(subscription, at=at)
    values: dict[int, Decimal | None] = {}
    for alert in alerts:
        if alert.alert_type == UsageAlert.AlertType.CURRENT_USAGE_AMOUNT:
            values[alert.pk] = Decimal(state.current_cents)
        elif alert.alert_type == UsageAlert.AlertType.LIFETIME_USAGE_AMOUNT:
            values[alert.pk] = Decimal(state.total_cents)
        else:
            mine = [line for line in state.lines if line.charge.billable_metric_id == alert.billable_metric_id]
            if not mine:
                values[alert.pk] = None
            elif alert.alert_type == UsageAlert.AlertType.METRIC_USAGE_AMOUNT:
                values[alert.pk] = Decimal(sum(line.amount_cents for line in mine))
            else:
                values[alert.pk] = max(line.units for line in mine)
    return values


@transaction.atomic
def alerts_evaluate(*, subscription_id: int, at: datetime | None = None) -> list[TriggeredAlert]:
    """Evaluate the subscription's alerts; record a TriggeredAlert and its webhook per crossing. Safe to rerun."""
    at = at or timezone.now()
    subscription = Subscription.objects.select_related("plan", "service", "customer").get(pk=subscription_id)
    if subscription.status != Subscription.Status.ACTIVE:
        return []
    alerts = list(
        UsageAlert.objects.select_for_update().filter(
            service_id=subscription.service_id, subscription_external_id=subscription.external_id
        ).order_by("pk")
    )
    if not alerts:
        return []
    values = _values(subscription, alerts, at=at)
    triggered: list[TriggeredAlert] = []
    for alert in alerts:
        current = values[alert.pk]
        if current is None:
            continue
        crossed = thresholds_crossed(list(alert.thresholds.all()), previous=alert.previous_value, current=current)
        if crossed:
            row = TriggeredAlert.objects.create(
                alert=alert, subscription=subscription, current_value=current, previous_value=alert.previous_value,
                crossed_thresholds=[{"code": c.code or None, "value": decimal_str(c.value), "recurring": c.recurring}
                                    for c in crossed],
                triggered_at=at,
            )
            _triggered_record(row, subscription)
            triggered.append(row)
        alert.previous_value, alert.last_processed_at = current, at
        alert.save(update_fields=["previous_value", "last_processed_at", "updated_at"])
    return triggered


def _triggered_record(row: TriggeredAlert, subscription: Subscription) -> None:
    from apps.webhooks.services import webhook_event_record

    from .representations import triggered_alert_out

    webhook_event_record(event_type="alert.triggered", object_type="triggered_alert",
                         payload_object=triggered_alert_out(row, subscription), service_ids=[subscription.service_id])


def _thresholds(alert_type: str, items: list[dict]) -> list[tuple[str, Decimal, bool]]:
    if not items:
        raise ValidationFailed("thresholds", details={"thresholds": ["value_is_mandatory"]})
    if sum(1 for item in items if item.get("recurring")) > 1:
        raise ValidationFailed("thresholds", details={"thresholds": ["only_one_recurring_threshold"]})
    out = []
    for item in items:
        value = item["value"]
        if alert_type != UsageAlert.AlertType.METRIC_USAGE_UNITS and value != value.to_integral_value():
            raise ValidationFailed("thresholds", details={"thresholds": ["value_is_invalid"]})  # minor units
        out.append((item.get("code") or "", value, bool(item.get("recurring"))))
    return out


def _metric(service: Service, alert_type: str, code: str | None) -> BillableMetric | None:
    if alert_type not in METRIC_TYPES:
        if code:
            raise ValidationFailed("metric", details={"billable_metric": ["value_must_be_blank"]})
        return None
    if not code:
        raise ValidationFailed("metric", details={"billable_metric": ["value_is_mandatory"]})
    metric = BillableMetric.objects.filter(service=service, code=code, deleted_at__isnull=True).first()
    if metric is None:
        raise NotFound("billable_metric")
    return metric


@transaction.atomic
def alerts_create(*, subscription: Subscription, items: list[dict]) -> list[UsageAlert]:
    """Create alerts on a subscription (one or Lago's batch); all or nothing. 422 on a code or type already used."""
    created = []
    for item in items:
        metric = _metric(subscription.service, item["alert_type"], item.get("billable_metric_code"))
        thresholds = _thresholds(item["alert_type"], item.get("thresholds") or [])
        try:
            with transaction.atomic():
                alert = UsageAlert.objects.create(
                    service=subscription.service, subscription_external_id=subscription.external_id,
                    alert_type=item["alert_type"], billable_metric=metric, code=item["code"],
                    name=item.get("name") or "",
                )
        except IntegrityError:
            taken = UsageAlert.objects.filter(service=subscription.service, code=item["code"],
                                              subscription_external_id=subscription.external_id).exists()
            raise ValidationFailed("alert", details={"code" if taken else "alert_type": ["value_already_exist"]}) from None
        UsageAlertThreshold.objects.bulk_create(
            UsageAlertThreshold(alert=alert, code=code, value=value, recurring=recurring)
            for code, value, recurring in thresholds
        )
        created.append(alert)
    return created


@transaction.atomic
def alert_update(*, alert: UsageAlert, values: dict) -> UsageAlert:
    """Change an alert's code, name, metric or thresholds (Lago's PUT)."""
    alert = UsageAlert.objects.select_for_update().get(pk=alert.pk)
    if "billable_metric_code" in values:
        alert.billable_metric = _metric(alert.service, alert.alert_type, values["billable_metric_code"])
    if "name" in values:
        alert.name = values["name"] or ""
    if values.get("code"):
        alert.code = values["code"]
    try:
        with transaction.atomic():
            alert.save()
    except IntegrityError:
        raise ValidationFailed("alert", details={"code": ["value_already_exist"]}) from None
    if "thresholds" in values:
        thresholds = _thresholds(alert.alert_type, values["thresholds"] or [])
        alert.thresholds.all().delete()
        UsageAlertThreshold.objects.bulk_create(
            UsageAlertThreshold(alert=alert, code=code, value=value, recurring=recurring)
            for code, value, recurring in thresholds
        )
    return alert


@transaction.atomic
def alerts_delete(*, alerts: list[UsageAlert]) -> None:
    UsageAlert.objects.filter(pk__in=[alert.pk for alert in alerts]).delete()


def alert_list(*, subscription: Subscription):
    return (UsageAlert.objects.filter(service_id=subscription.service_id,
                                      subscription_external_id=subscription.external_id)
            .select_related("billable_metric").prefetch_related("thresholds").order_by("created_at", "id"))


def alert_get(*, subscription: Subscription, code: str) -> UsageAlert:
    alert = alert_list(subscription=subscription).filter(code=code).first()
    if alert is None:
        raise NotFound("alert")
    return alert
