"""The close's pricing stage: charge lines priced from their usage (rating.py), minimum true-ups."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from decimal import Decimal
from typing import Any

from apps.catalog.models import Charge, ChargeFilter

from apps.core.money import currency_exponent
from apps.usage.aggregation import values_in_order

from .. import filters, rating
from ..fees import ZERO, Line, Window, _json
from ..models import Fee
from ..selectors import group_canon, group_key_part
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


def _group_of(combination, keys) -> dict:
    carried = dict(combination)
    return {key: carried.get(key) for key in keys}


def line_combinations(line: Line, parts) -> list:
    """Of a metric's usage `parts` (keyed by combination of filter and group values), those `line` bills: its
    filter's share (`filter_combinations`), then its group's (`line.grouped_by`)."""
    combinations = list(parts)
    if line.charge.live_filters:
        combinations = filter_combinations(line, combinations)
    if line.grouped_by is not None:
        wanted = line.grouped_by
        combinations = [item for item in combinations if _group_of(item, wanted) == wanted]
    return combinations


def group_lines(line: Line, parts) -> list[Line]:
    """Split a charge line (the charge's own or one filter's) whose properties set pricing group keys into one line
    per distinct combination of those keys' values in its usage `parts` (Lago's GroupedService: one fee per group,
    each priced on its own with the charge model). An event without a key is in the group where it is null, as
    Lago groups on `properties->>key`. No usage: one line with every key null (Lago's empty grouped result).

    Each line's key adds its group (`:group:<canonical JSON>`): a rerun, a late close or progressive billing name
    the same group the same way. The charge minimum stays on the last line, trued up over all the charge's lines.
    """
    keys = rating.pricing_group_keys(line.properties)
    if not keys:
        return [line]
    groups: dict[str, dict] = {}
    combinations = list(parts or ())
    if line.charge.live_filters:
        combinations = filter_combinations(line, combinations)
    for combination in combinations:
        group = _group_of(combination, keys)
        groups.setdefault(group_canon(group), group)
    if not groups:
        group = dict.fromkeys(keys)
        groups[group_canon(group)] = group
    ordered = [groups[canon] for canon in sorted(groups)]
    return [
        replace(
            line, fee_key=f"{line.fee_key}:group:{group_key_part(group)}", grouped_by=group,
            name=" · ".join([line.name, *(str(value) for value in group.values() if value is not None)])[:255],
            min_amount_cents=line.min_amount_cents if last else 0, proration=line.proration if last else None,
        )
        for position, group in enumerate(ordered)
        for last in (position == len(ordered) - 1,)
    ]


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
                    fee_key=line.fee_key.partition(":group:")[0].replace(":charge:", ":minimum:", 1),
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
    # Charges with pricing group keys: one line per group of their usage (`group_lines`).
    expanded: list[Line] = []
    for line in lines:
        if line.window is not None and line.charge is not None and rating.pricing_group_keys(line.properties):
            total = totals.get((line.window, line.subscription.pk, line.charge.billable_metric_id))
            expanded.extend(group_lines(line, total.parts if total is not None else ()))
        else:
            expanded.append(line)
    lines = expanded
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
        filtered = bool(line.charge.live_filters) or line.grouped_by is not None
        if filtered and total is not None:
            combinations = line_combinations(line, total.parts)
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
        own_key = line.fee_key.partition(":filter:")[0].partition(":group:")[0]
        priced[index] = price_charge_line(line, units=units, events_count=events, per_event_amounts=per_event,
                                          siblings=siblings.get(own_key, (0, ZERO)), events_amount_cents=prices)
        # Every line but the one holding the charge's minimum (its last) counts toward that minimum.
        if line.charge_filter is not None or (line.grouped_by is not None and not line.min_amount_cents):
            cents, precise = siblings.get(own_key, (0, ZERO))
            siblings[own_key] = (cents + line.amount_cents, precise + line.precise_amount)
    return [item for index in range(len(lines)) for item in priced[index]]
