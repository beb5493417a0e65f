"""The close's pricing stage: charge lines priced from their usage (rating.py), minimum true-ups."""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from apps.catalog.models import Charge

from .. import rating
from ..fees import ZERO, Line, Window, _json
from ..models import Fee
from .usage import PerEventValues, UsageFetcher, _needs_values, _usage_totals, per_event_values


def _charge_pricing(charge: Charge) -> rating.ChargePricing:
    """The charge's parsed properties, kept on the instance: a close loads each plan's charges once per chunk
    and prices them for every subscription on the plan. Parsed again if `properties` was replaced."""
    cached = charge.__dict__.get("_pricing")
    if cached is None or cached[0] is not charge.properties or cached[1] != charge.charge_model:
        cached = (charge.properties, charge.charge_model, rating.charge_pricing(charge.charge_model, charge.properties))
        charge.__dict__["_pricing"] = cached
    return cached[2]


def price_charge_line(
    line: Line, *, units: Decimal, events_count: int, per_event_amounts: tuple[Decimal, ...] | None = None
) -> list[Line]:
    """Price a charge line from its usage totals (and, for charges that need them, the events' values in
    time order); return it plus a minimum true-up line if due."""
    charge = line.charge
    metric = charge.billable_metric
    billed_units = units
    if metric.rounding_function:
        billed_units = rating.round_units(
            units, rounding_function=metric.rounding_function, rounding_precision=metric.rounding_precision or 0
        )
    result = rating.price_charge_with(
        _charge_pricing(charge),
        units=billed_units,
        events_count=events_count,
        currency=line.currency,
        per_event_amounts=per_event_amounts,
    )
    line.units = billed_units
    line.total_aggregated_units = units
    line.events_count = events_count
    line.precise_amount = result.precise_amount
    line.amount_cents = result.amount_cents
    line.precise_unit_amount = result.precise_amount / billed_units if billed_units else ZERO
    line.amount_details = _json(result.details)
    lines = [line]
    if line.min_amount_cents and line.proration:
        period, first, until = line.proration
        true_up = rating.charge_minimum_true_up(
            min_amount_cents=line.min_amount_cents,
            charge_amount_cents=result.amount_cents,
            charge_precise_amount=result.precise_amount,
            currency=line.currency,
            period=period,
            active_from=first,
            active_to=until,
        )
        if true_up.amount_cents:
            lines.append(
                Line(
                    billing_on=line.billing_on,
                    currency=line.currency,
                    fee_key=line.fee_key.replace(":charge:", ":minimum:", 1),
                    fee_type=Fee.FeeType.COMMITMENT,
                    subscription=line.subscription,
                    charge=charge,
                    name=f"{line.name}: minimum spend true-up",
                    units=Decimal(1),
                    precise_unit_amount=true_up.precise_amount,
                    precise_amount=true_up.precise_amount,
                    amount_cents=true_up.amount_cents,
                    amount_details={"min_amount_cents": line.min_amount_cents},
                    from_datetime=line.from_datetime,
                    to_datetime=line.to_datetime,
                    period_from=line.period_from,
                    period_to=line.period_to,
                )
            )
    return lines


def price_lines(
    lines: list[Line], *, fetch: UsageFetcher = _usage_totals, values: PerEventValues | None = None
) -> list[Line]:
    """Fetch usage for the charge lines (one aggregate query per distinct window) and price them.

    `values`: the events' values already fetched for these lines (`per_event_values`, e.g. once for a
    whole batch); fetched here otherwise, only for the lines that need them.
    """
    if values is None:
        values = per_event_values(lines)
    by_window: dict[Window, set[int]] = defaultdict(set)
    for line in lines:
        if line.window is not None:
            by_window[line.window].add(line.subscription.pk)
    totals: dict[tuple[Window, int, int], Any] = {}
    for window, subscription_ids in by_window.items():
        for (subscription_id, metric_id), total in fetch(sorted(subscription_ids), window.start, window.end).items():
            totals[(window, subscription_id, metric_id)] = total
    priced: list[Line] = []
    for line in lines:
        if line.window is None:
            priced.append(line)
            continue
        total = totals.get((line.window, line.subscription.pk, line.charge.billable_metric_id))
        units = Decimal(total.units) if total is not None else ZERO
        events = int(total.events_count) if total is not None else 0
        amounts = None
        if _needs_values(line):
            amounts = values.get((line.window, line.subscription.pk, line.charge.billable_metric_id), ())
        priced.extend(price_charge_line(line, units=units, events_count=events, per_event_amounts=amounts))
    return priced
