"""What a pay-in-advance charge would bill for an event not sent (Lago's POST /events/estimate_fees,
/events/estimate_instant_fees and /events/batch_estimate_instant_fees). Nothing is stored.

Two estimates, as Lago has them (`lago-api:app/services/fees/estimate_pay_in_advance_service.rb`,
`fees/estimate_instant/*`):
- `estimate_fees`: the fee the event would add to the period's usage so far, every charge model: the charge priced
  on the units so far plus the event's, less the charge priced on the units so far (a graduated tier crossed by
  the event is priced as the close prices it), taxed by the customer's province as the invoice would tax it;
- `instant_fees`: the event priced on its own, standard and percentage charges only, untaxed (Lago's instant
  estimate reads no usage, so it answers fast for a checkout page).
Pay-in-advance charges are billed in arrears by the hub (README, deviations): the estimate is what the event adds
to the charge's fee of the period, which is the amount Lago would bill at once.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.utils import timezone

from apps.catalog.models import BillableMetric, Charge
from apps.core.exceptions import ValidationFailed
from apps.core.money import to_minor_units
from apps.subscriptions.models import Subscription

from .close.planning import _charge_name, current_usage_lines
from .fees import customer_tax_rates, fee_taxes
from .models import Fee, Invoice
from .rating import ChargeModel, charge_pricing, needs_per_event_amounts, price_charge, pricing_group_keys, round_units
from .selectors import group_canon

ZERO = Decimal(0)
INSTANT_MODELS = (Charge.ChargeModel.STANDARD, Charge.ChargeModel.PERCENTAGE)


@dataclass(frozen=True)
class EventEstimateIn:
    code: str
    properties: dict
    transaction_id: str | None = None


@dataclass
class FeeEstimate:
    subscription: Subscription
    charge: Charge
    event: EventEstimateIn
    units: Decimal
    precise_amount: Decimal  # major units, unrounded
    amount_cents: int
    fee: Fee | None = None  # estimate_fees: the unsaved fee, taxed


def _event_group(charge: Charge, event: EventEstimateIn) -> dict | None:
    """The pricing group the event falls in ({key: value as text, None if absent}: Lago groups on
    `properties->>key`); None for a charge without pricing group keys."""
    keys = pricing_group_keys(charge.properties)
    if not keys:
        return None
    properties = event.properties or {}
    return {key: _as_text(properties.get(key)) for key in keys}


def _as_text(value) -> str | None:
    """A JSON property value as PostgreSQL's `->>` reads it."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, separators=(", ", ": ")) if isinstance(value, (dict, list)) else str(value)


def _event_units(metric: BillableMetric, event: EventEstimateIn) -> Decimal:
    """The units one event adds (Lago: its `field_name` property, 1 for a metric without one), rounded as the
    metric rounds its aggregate."""
    if not metric.field_name or metric.aggregation_type in ("count_agg", "unique_count_agg"):
        units = Decimal(1)
    else:
        raw = (event.properties or {}).get(metric.field_name)
        try:
            # A JSON number arrives as int or float: its shortest repr is the digits the app sent.
            units = ZERO if raw is None else Decimal(str(raw)) if not isinstance(raw, bool) else Decimal("nan")
        except InvalidOperation:
            units = Decimal("nan")
        if not units.is_finite():
            raise ValidationFailed("bad units", details={"properties": ["value_is_not_valid_number"]})
    if metric.rounding_function:
        units = round_units(units, rounding_function=metric.rounding_function,
                            rounding_precision=metric.rounding_precision or 0)
    return units


def _advance_charges(subscription: Subscription, *, models=None) -> list[Charge]:
    charges = subscription.plan.charges.filter(pay_in_advance=True).select_related("billable_metric").order_by("pk")
    if models is not None:
        charges = charges.filter(charge_model__in=models)
    return list(charges)


def _no_charge() -> ValidationFailed:
    return ValidationFailed("no instant charge", details={"code": ["does_not_match_an_instant_charge"]})


def instant_fees(*, subscription: Subscription, events: list[EventEstimateIn]) -> list[FeeEstimate]:
    """Each event priced alone by the subscription's pay-in-advance standard and percentage charges of its metric
    (Lago's instant estimate: a percentage is the event's value × rate + the fixed fee, within the per-transaction
    minimum and maximum; negative units price nothing). 422 `does_not_match_an_instant_charge` when the plan has
    no such charge at all (a batch: none for any of its events)."""
    charges = _advance_charges(subscription, models=INSTANT_MODELS)
    if not charges or not any(charge.billable_metric.code == event.code for event in events for charge in charges):
        raise _no_charge()
    currency = subscription.plan.amount_currency
    out = []
    for event in events:
        for charge in (charge for charge in charges if charge.billable_metric.code == event.code):
            units = _event_units(charge.billable_metric, event)
            amount = _alone(charge, units)
            out.append(FeeEstimate(subscription=subscription, charge=charge, event=event, units=units,
                                   precise_amount=amount, amount_cents=to_minor_units(amount, currency)))
    return out


def _alone(charge: Charge, units: Decimal) -> Decimal:
    """One event's amount under a standard or percentage charge, on its own (major units, unrounded)."""
    parsed = charge_pricing(charge.charge_model, charge.properties).parsed
    if units < 0:
        return ZERO
    if charge.charge_model == Charge.ChargeModel.STANDARD:
        return units * parsed["amount"]
    amount = units * parsed["rate"] / 100 + (parsed["fixed_amount"] or ZERO)
    low, high = parsed["per_transaction_min_amount"], parsed["per_transaction_max_amount"]
    amount = max(amount, low) if low is not None else amount
    return min(amount, high) if high is not None else amount


def _priced(charge: Charge, units: Decimal, events_count: int, currency: str) -> Decimal:
    return price_charge(charge_model=charge.charge_model, properties=charge.properties, units=units,
                        events_count=events_count, currency=currency).precise_amount


def estimate_fees(*, subscription: Subscription, event: EventEstimateIn, at: datetime | None = None) -> list[FeeEstimate]:
    """The fees the event would add to its pay-in-advance charges this period, given the usage so far, taxed.

    A percentage charge whose pricing needs each event's value (free events, per-transaction limits) is priced
    as Lago's instant estimate prices it: on the event alone.
    """
    at = at or timezone.now()
    charges = [charge for charge in _advance_charges(subscription) if charge.billable_metric.code == event.code]
    if not charges:
        raise _no_charge()
    period, p_from, p_to, lines = current_usage_lines(subscription, at=at)
    # The charge's own line (last of its lines); a grouped charge's, that of the event's pricing group.
    so_far = {(line.charge.pk, group_canon(line.grouped_by or {})): line for line in lines if line.charge is not None
              and line.charge_filter is None}
    currency = subscription.plan.amount_currency
    rates = customer_tax_rates(subscription.customer, on=period.end)
    out = []
    for charge in charges:
        units = _event_units(charge.billable_metric, event)
        group = _event_group(charge, event)
        line = so_far.get((charge.pk, group_canon(group or {})))
        before_units, before_events = (line.units, line.events_count) if line is not None else (ZERO, 0)
        if charge.charge_model == ChargeModel.PERCENTAGE and needs_per_event_amounts(
                charge_model=charge.charge_model, properties=charge.properties):
            amount = _alone(charge, units)
        else:
            amount = _priced(charge, before_units + units, before_events + 1, currency) - _priced(
                charge, before_units, before_events, currency)
        amount_cents = to_minor_units(amount, currency)
        taxes_cents, taxes_rate, applied = fee_taxes(amount_cents, rates)
        fee = Fee(
            invoice=Invoice(currency=currency),  # none: fee_out reads its payment status (pending)
            fee_key="", fee_type=Fee.FeeType.CHARGE, service_id=subscription.service_id, subscription=subscription,
            charge=charge, grouped_by=group or {}, name=_charge_name(subscription, charge), currency=currency,
            units=units,
            total_aggregated_units=units, events_count=1,
            precise_unit_amount=(amount / units) if units else ZERO, precise_amount=amount, amount_cents=amount_cents,
            taxes_amount_cents=taxes_cents, taxes_rate=taxes_rate, applied_taxes=applied,
            amount_details={"pay_in_advance": True}, from_datetime=p_from, to_datetime=p_to, created_at=at,
        )
        out.append(FeeEstimate(subscription=subscription, charge=charge, event=event, units=units,
                               precise_amount=amount, amount_cents=amount_cents, fee=fee))
    return out

