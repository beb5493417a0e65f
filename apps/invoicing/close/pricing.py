"""The close's pricing stage: charge lines priced from their usage (rating.py), minimum true-ups."""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from apps.catalog.models import Charge, ChargeFilter

from apps.core.money import currency_exponent
from apps.usage.aggregation import values_in_order

from .. import filters, rating
from ..fees import ZERO, Line, Window, _json
from ..models import Fee
from .usage import (
    PerEventValues, UsageFetcher, _needs_values, _usage_totals, event_amounts, is_dynamic, per_event_values,
)


def _charge_pricing(charge: Charge, charge_filter: ChargeFilter | None = None) -> rating.ChargePricing:
    """The charge's parsed properties (or its filter's), kept on that instance: a close loads each plan's charges
    once per chunk and prices them for every subscription on the plan. Parsed again if `properties` was replaced."""
    owner = charge_filter if charge_filter is not None else charge
    cached = owner.__dict__.get("_pricing")
    if cached is None or cached[0] is not owner.properties or cached[1] != charge.charge_model:
        cached = (owner.properties, charge.charge_model, rating.charge_pricing(charge.charge_model, owner.properties))
        owner.__dict__["_pricing"] = cached
    return cached[2]


def _filter_specs(charge: Charge) -> list:
    """The charge's filters with their values expanded, kept on the instance like `_charge_pricing`."""
    cached = charge.__dict__.get("_filter_specs")
    if cached is None:
        live = charge.live_filters
        cached = charge.__dict__["_filter_specs"] = (
            {item.pk: index for index, item in enumerate(live)},
            filters.filter_specs([item.values for item in live], charge.billable_metric.filters or []),
        )
    return cached


def filter_combinations(line: Line, combinations) -> list:
    """Of a filtered metric's `combinations` of filter values, those whose events `line` bills: its filter's, or
    (the charge's own line) those no filter of the charge prices."""
    positions, specs = _filter_specs(line.charge)
    wanted = positions[line.charge_filter.pk] if line.charge_filter is not None else None
    return [combination for combination in combinations if filters.matching_filter(combination, specs) == wanted]


def price_charge_line(
    line: Line, *, units: Decimal, events_count: int, per_event_amounts: tuple[Decimal, ...] | None = None,
    siblings: tuple[int, Decimal] = (0, ZERO), events_amount_cents: Decimal = ZERO,
) -> list[Line]:
    """Price a charge line from its usage totals (and, for charges that need them, the events' values in
    time order); return it plus a minimum true-up line if due. `siblings`: the cents and precise amount of the
    charge's filter lines of the same period, which count toward its minimum (Lago's true-up over all its fees).
    `events_amount_cents`: a dynamic charge's events' own prices summed (minor units)."""
    charge = line.charge
    metric = charge.billable_metric
    billed_units = units
    if metric.rounding_function:
        billed_units = rating.round_units(
            units, rounding_function=metric.rounding_function, rounding_precision=metric.rounding_precision or 0
        )
    result = rating.price_charge_with(
        _charge_pricing(charge, line.charge_filter),
        units=billed_units,
        events_count=events_count,
        currency=line.currency,
        per_event_amounts=per_event_amounts,
        events_amount=from_minor_units_precise(events_amount_cents, line.currency),
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
            charge_amount_cents=result.amount_cents + siblings[0],
            charge_precise_amount=result.precise_amount + siblings[1],
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


def from_minor_units_precise(cents: Decimal, currency: str) -> Decimal:
    """Unrounded minor units to major units (a dynamic event's price may hold fractions of a cent)."""
    return Decimal(cents).scaleb(-currency_exponent(currency))


def price_lines(
    lines: list[Line], *, fetch: UsageFetcher = _usage_totals, values: PerEventValues | None = None
) -> list[Line]:
    """Fetch usage for the charge lines (one aggregate query per distinct window) and price them.

    `values`: the events' values already fetched for these lines (`per_event_values`, e.g. once for a
    whole batch); fetched here otherwise, only for the lines that need them.
    """
    if values is None:
        values = per_event_values(lines)
    event_prices = event_amounts(lines)  # dynamic charges only
    by_window: dict[Window, set[int]] = defaultdict(set)
    for line in lines:
        if line.window is not None:
            by_window[line.window].add(line.subscription.pk)
    totals: dict[tuple[Window, int, int], Any] = {}
    for window, subscription_ids in by_window.items():
        for (subscription_id, metric_id), total in fetch(sorted(subscription_ids), window.start, window.end).items():
            totals[(window, subscription_id, metric_id)] = total
    priced: dict[int, list[Line]] = {}
    siblings: dict[str, tuple[int, Decimal]] = {}
    # Filter lines first: their amounts count toward the charge's minimum, trued up on the charge's own line.
    for index in sorted(range(len(lines)), key=lambda index: lines[index].charge_filter is None):
        line = lines[index]
        if line.window is None:
            priced[index] = [line]
            continue
        key = (line.window, line.subscription.pk, line.charge.billable_metric_id)
        total = totals.get(key)
        filtered = bool(line.charge.live_filters)
        if filtered and total is not None:
            combinations = filter_combinations(line, total.parts)
            total = total.select(combinations)
        units = Decimal(total.units) if total is not None else ZERO
        events = int(total.events_count) if total is not None else 0
        per_event = None
        if _needs_values(line):
            if filtered:
                per_event = values_in_order(values.get((*key, combination), ()) for combination in combinations) \
                    if total is not None else ()
            else:
                per_event = values.get(key, ())
        prices = ZERO
        if is_dynamic(line):
            keys = [(*key, combination) for combination in combinations] if filtered and total is not None else (
                [] if filtered else [key])
            prices = sum((event_prices.get(one, ZERO) for one in keys), ZERO)
        own_key = line.fee_key.partition(":filter:")[0]
        priced[index] = price_charge_line(line, units=units, events_count=events, per_event_amounts=per_event,
                                          siblings=siblings.get(own_key, (0, ZERO)), events_amount_cents=prices)
        if line.charge_filter is not None:
            cents, precise = siblings.get(own_key, (0, ZERO))
            siblings[own_key] = (cents + line.amount_cents, precise + line.precise_amount)
    return [item for index in range(len(lines)) for item in priced[index]]
