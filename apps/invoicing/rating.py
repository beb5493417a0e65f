"""The pure rating engine: usage aggregation, charge models and plan base fees.

Pure module: no ORM, no I/O, no Django. Quantities and prices are `Decimal`
(a float anywhere raises TypeError); billed amounts are rounded once per fee,
half-up, to the currency's minor unit (`apps.core.money.to_minor_units`).

Semantics follow Lago (research/lago-api.md §2.2-2.4; lago-api
`app/services/charge_models/*`, `credit_notes/create_from_termination.rb`);
deliberate deviations are marked "Deviation from Lago".

Units: `precise_amount` is in *major* units (Decimal, unrounded), `*_amount_cents`
in integer *minor* units, charge properties are major-unit decimal strings (Lago's
wire format), plan/minimum amounts are minor-unit ints. Dates are local days in
the customer's timezone; `Period.end` and every `active_to` are exclusive.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from collections.abc import Iterable, Mapping, Sequence  # not typing's aliases: isinstance through them is ~4x slower
from typing import Any

from apps.catalog.pricing_groups import (  # noqa: F401  (the rating API, where callers find them)
    group_keys_field, pricing_group_keys, properties_group_keys_normalized, properties_group_keys_out,
)
from apps.core.money import currency_exponent, from_minor_units, to_minor_units
from apps.subscriptions.periods import PERIODS_PER_YEAR, Interval, Period

ZERO = Decimal(0)
ONE = Decimal(1)


def _require_decimal(value: object, name: str) -> Decimal:
    if not isinstance(value, Decimal):
        raise TypeError(f"{name} must be Decimal, not {type(value).__name__}")
    return value


def _require_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be int, not {type(value).__name__}")
    return value


def _require_date(value: object, name: str) -> date:
    if type(value) is not date:
        raise TypeError(f"{name} must be datetime.date, not {type(value).__name__}")
    return value


def _reject_floats(value: object, path: str = "properties") -> None:
    """Raise TypeError if a float hides anywhere in a JSON-like structure."""
    if isinstance(value, float):
        raise TypeError(f"{path} is a float; send a decimal string or an int")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _reject_floats(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _reject_floats(item, f"{path}[{index}]")


# --------------------------------------------------------------------------- aggregation


class AggregationType(StrEnum):
    COUNT = "count_agg"
    SUM = "sum_agg"
    MAX = "max_agg"
    UNIQUE_COUNT = "unique_count_agg"
    LATEST = "latest_agg"
    WEIGHTED_SUM = "weighted_sum_agg"


RECURRING_AGGREGATIONS = frozenset({AggregationType.SUM, AggregationType.UNIQUE_COUNT, AggregationType.WEIGHTED_SUM})


class Operation(StrEnum):
    ADD = "add"
    REMOVE = "remove"


@dataclass(frozen=True)
class UsageRecord:
    timestamp: datetime  # aware
    value: Decimal = ZERO  # the metric's field_name value (ignored by count_agg)
    unique_key: str | None = None  # unique_count_agg: the counted property value
    operation: Operation = Operation.ADD  # unique_count_agg: add/remove (Lago operation_type)

    def __post_init__(self) -> None:
        if not isinstance(self.timestamp, datetime) or self.timestamp.utcoffset() is None:
            raise TypeError("UsageRecord.timestamp must be an aware datetime")
        _require_decimal(self.value, "UsageRecord.value")
        object.__setattr__(self, "operation", Operation(self.operation))


@dataclass(frozen=True)
class AggregationResult:
    units: Decimal
    events_count: int
    per_event_values: tuple[Decimal, ...]  # in time order; what percentage's per-transaction rules need
    carried_value: Decimal = ZERO  # recurring sum: running total; weighted_sum: level at period end
    carried_keys: frozenset[str] = frozenset()  # recurring unique_count: keys active at period end


def aggregate(
    *,
    aggregation_type: AggregationType | str,
    records: Iterable[UsageRecord],
    period_from: datetime,
    period_to: datetime,
    recurring: bool = False,
    carried_value: Decimal = ZERO,
    carried_keys: frozenset[str] = frozenset(),
) -> AggregationResult:
    """Aggregate one period's usage records into units.

    Every record must lie in [period_from, period_to) (aware datetimes, `to`
    exclusive). `carried_value`/`carried_keys` are the previous period's
    `AggregationResult.carried_*` and only apply to recurring metrics.

    - count: number of records; sum: Σ value (+ carried running total if recurring);
      max / latest: largest / most recent value (0 without records).
    - unique_count: keys active at any moment of the period: carried keys plus
      keys added in it, so a seat removed mid-period is still billed (Lago's
      recurring unique count); the keys still active at the end carry over.
    - weighted_sum: each value is a delta to a level that starts at `carried_value`;
      units = Σ level × seconds at that level / seconds in period (Lago
      `weighted_sum_agg`, weighted_interval=seconds).
    """
    kind = AggregationType(aggregation_type)
    if not (isinstance(period_from, datetime) and isinstance(period_to, datetime)):
        raise TypeError("period bounds must be aware datetimes")
    if period_from.utcoffset() is None or period_to.utcoffset() is None:
        raise TypeError("period bounds must be aware datetimes")
    if period_to <= period_from:
        raise ValueError("empty aggregation period")
    _require_decimal(carried_value, "carried_value")
    if recurring and kind not in RECURRING_AGGREGATIONS:
        raise ValueError(f"{kind} cannot be recurring (Lago: not_compatible_with_aggregation_type)")
    if not recurring and kind is not AggregationType.WEIGHTED_SUM and (carried_value or carried_keys):
        raise ValueError("only recurring metrics carry values across periods")
    if kind is AggregationType.WEIGHTED_SUM and not recurring and carried_value:
        raise ValueError("only recurring weighted sums start from a carried level")

    # sorted() is stable: records with equal timestamps keep their input order.
    ordered = sorted(records, key=lambda record: record.timestamp)
    for record in ordered:
        if not isinstance(record, UsageRecord):
            raise TypeError(f"expected UsageRecord, not {type(record).__name__}")
        if not period_from <= record.timestamp < period_to:
            raise ValueError(f"record at {record.timestamp.isoformat()} is outside the period")
    values = tuple(record.value for record in ordered)
    count = len(ordered)

    if kind is AggregationType.COUNT:
        return AggregationResult(Decimal(count), count, tuple(ONE for _ in ordered))
    if kind is AggregationType.SUM:
        total = (carried_value if recurring else ZERO) + sum(values, ZERO)
        return AggregationResult(total, count, values, carried_value=total if recurring else ZERO)
    if kind is AggregationType.MAX:
        return AggregationResult(max(values, default=ZERO), count, values)
    if kind is AggregationType.LATEST:
        return AggregationResult(values[-1] if values else ZERO, count, values)
    if kind is AggregationType.UNIQUE_COUNT:
        active = set(carried_keys) if recurring else set()
        billed = set(active)
        for record in ordered:
            if record.unique_key is None:
                raise ValueError("unique_count_agg records need a unique_key")
            if record.operation is Operation.ADD:
                active.add(record.unique_key)
                billed.add(record.unique_key)
            else:
                active.discard(record.unique_key)
        return AggregationResult(
            Decimal(len(billed)), count, values, carried_keys=frozenset(active) if recurring else frozenset()
        )
    # WEIGHTED_SUM: one division at the end keeps the result exact where it terminates.
    microsecond = timedelta(microseconds=1)
    total_us = (period_to - period_from) // microsecond
    level, cursor, area = carried_value, period_from, ZERO
    for record in ordered:
        area += level * ((record.timestamp - cursor) // microsecond)
        level, cursor = level + record.value, record.timestamp
    area += level * ((period_to - cursor) // microsecond)
    return AggregationResult(area / total_us, count, values, carried_value=level if recurring else ZERO)


class RoundingFunction(StrEnum):
    CEIL = "ceil"
    FLOOR = "floor"
    ROUND = "round"


_ROUNDING = {RoundingFunction.CEIL: ROUND_CEILING, RoundingFunction.FLOOR: ROUND_FLOOR, RoundingFunction.ROUND: ROUND_HALF_UP}


def round_units(units: Decimal, *, rounding_function: RoundingFunction | str, rounding_precision: int = 0) -> Decimal:
    """Apply a billable metric's `rounding_function` at `rounding_precision` places (may be negative)."""
    _require_decimal(units, "units")
    _require_int(rounding_precision, "rounding_precision")
    mode = _ROUNDING[RoundingFunction(rounding_function)]
    return units.quantize(ONE.scaleb(-rounding_precision), mode) if rounding_precision >= 0 else (
        units.scaleb(rounding_precision).quantize(ONE, mode).scaleb(-rounding_precision)
    )


# --------------------------------------------------------------------------- charge properties


class ChargeModel(StrEnum):
    STANDARD = "standard"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PACKAGE = "package"
    PERCENTAGE = "percentage"
    GRADUATED_PERCENTAGE = "graduated_percentage"
    DYNAMIC = "dynamic"  # each event carries its own price (`precise_total_amount_cents`); sum metrics only


@dataclass(frozen=True)
class _Range:
    from_value: Decimal
    to_value: Decimal | None  # None = unbounded last tier
    per_unit_amount: Decimal
    flat_amount: Decimal


_MISSING = object()


class _Parser:
    """Collect Lago-style errors ({field: [code]}) while parsing properties."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, key: str, code: str) -> None:
        codes = self.errors.setdefault(key, [])
        if code not in codes:
            codes.append(code)

    def decimal(self, props: Mapping[str, Any], key: str, code: str, *, required: bool, error_key: str | None = None):
        """Return a non-negative Decimal from a decimal string, int or Decimal; None on error or absence."""
        error_key = error_key or key
        raw = props.get(key, _MISSING)
        if raw is _MISSING or raw is None:
            if required:
                self.add(error_key, "value_is_mandatory")
            return None
        if isinstance(raw, (float, bool)):
            self.add(error_key, "value_is_invalid")
            return None
        if isinstance(raw, int):
            value = Decimal(raw)
        elif isinstance(raw, Decimal):
            value = raw
        elif isinstance(raw, str) and raw.strip():
            try:
                value = Decimal(raw.strip())
            except InvalidOperation:
                self.add(error_key, code)
                return None
        else:
            self.add(error_key, code)
            return None
        if not value.is_finite() or value < 0:
            self.add(error_key, code)
            return None
        return value

    def integer(self, props: Mapping[str, Any], key: str, code: str, *, required: bool, minimum: int):
        """Return an int >= minimum from an int or a digit string; None on error or absence."""
        raw = props.get(key, _MISSING)
        if raw is _MISSING or raw is None:
            if required:
                self.add(key, "value_is_mandatory")
            return None
        if isinstance(raw, (float, bool)):
            self.add(key, "value_is_invalid")
            return None
        if isinstance(raw, str) and raw.strip().isdigit():
            raw = int(raw.strip())
        if not isinstance(raw, int) or raw < minimum:
            self.add(key, code)
            return None
        return raw

    def ranges(
        self, props: Mapping[str, Any], key: str, missing: str, invalid: str, *, price: str = "per_unit_amount"
    ) -> list[_Range] | None:
        """Parse Lago tiers: classic (from = previous to + 1) or adjacent (from = previous to), not mixed.
        `price`: each tier's per-unit field ("rate", a percent, for graduated_percentage)."""
        raw = props.get(key)
        if raw is None or (isinstance(raw, (list, tuple)) and not raw):
            self.add(key, missing)
            return None
        if not isinstance(raw, (list, tuple)) or not all(isinstance(item, Mapping) for item in raw):
            self.add(key, invalid)
            return None
        parsed: list[_Range] = []
        bounds_ok = True
        for item in raw:
            from_value = self.decimal(item, "from_value", invalid, required=True, error_key=key)
            to_value = self.decimal(item, "to_value", invalid, required=False, error_key=key)
            per_unit = self.decimal(item, price, "invalid_rate" if price == "rate" else "invalid_amount", required=True)
            flat = self.decimal(item, "flat_amount", "invalid_amount", required=True)
            if from_value is None or (item.get("to_value") is not None and to_value is None):
                bounds_ok = False
                continue
            parsed.append(_Range(from_value, to_value, per_unit or ZERO, flat or ZERO))
        if not bounds_ok or not _valid_bounds(parsed):
            self.add(key, invalid)
            return None
        return parsed


def _valid_bounds(ranges: Sequence[_Range]) -> bool:
    if not ranges or ranges[0].from_value != 0 or ranges[-1].to_value is not None:
        return False
    steps, lower = set(), ZERO
    for previous, current in zip(ranges, ranges[1:]):
        # Each tier must hold some units: to_value above the previous tier's (a classic
        # one-unit tier [2, 2] holds one unit).
        if previous.to_value is None or previous.to_value <= lower or previous.to_value < previous.from_value:
            return False
        lower = previous.to_value
        steps.add(current.from_value - previous.to_value)
    # Deviation from Lago: mixing classic (+1) and adjacent (0) steps is refused, as
    # Lago would then bill one extra unit in each adjacent tier.
    return steps <= {ZERO} or steps <= {ONE}


def _parse_properties(charge_model: object, properties: object) -> tuple[dict[str, Any], dict[str, list[str]]]:
    parser = _Parser()
    try:
        model = ChargeModel(charge_model)
    except ValueError:
        return {}, {"charge_model": ["value_is_invalid"]}
    if not isinstance(properties, Mapping):
        return {}, {"properties": ["value_is_invalid"]}
    parsed: dict[str, Any] = {}
    if model is ChargeModel.STANDARD:
        parsed["amount"] = parser.decimal(properties, "amount", "invalid_amount", required=True)
    elif model is ChargeModel.GRADUATED:
        parsed["ranges"] = parser.ranges(
            properties, "graduated_ranges", "missing_graduated_ranges", "invalid_graduated_ranges"
        )
    elif model is ChargeModel.VOLUME:
        parsed["ranges"] = parser.ranges(properties, "volume_ranges", "missing_volume_ranges", "invalid_volume_ranges")
    elif model is ChargeModel.GRADUATED_PERCENTAGE:
        parsed["ranges"] = parser.ranges(
            properties, "graduated_percentage_ranges", "missing_graduated_percentage_ranges",
            "invalid_graduated_percentage_ranges", price="rate",
        )
    elif model is ChargeModel.DYNAMIC:
        pass  # no properties: the events carry their prices
    elif model is ChargeModel.PACKAGE:
        parsed["amount"] = parser.decimal(properties, "amount", "invalid_amount", required=True)
        parsed["package_size"] = parser.integer(
            properties, "package_size", "invalid_package_size", required=True, minimum=1
        )
        free = parser.integer(properties, "free_units", "invalid_free_units", required=False, minimum=0)
        parsed["free_units"] = Decimal(free or 0)
    else:
        parsed["rate"] = parser.decimal(properties, "rate", "invalid_rate", required=True)
        parsed["fixed_amount"] = parser.decimal(properties, "fixed_amount", "invalid_fixed_amount", required=False)
        parsed["free_units_per_events"] = parser.integer(
            properties, "free_units_per_events", "invalid_free_units_per_events", required=False, minimum=0
        )
        parsed["free_units_per_total_aggregation"] = parser.decimal(
            properties,
            "free_units_per_total_aggregation",
            "invalid_free_units_per_total_aggregation",
            required=False,
        )
        low = parser.decimal(
            properties, "per_transaction_min_amount", "invalid_per_transaction_min_amount", required=False
        )
        high = parser.decimal(
            properties, "per_transaction_max_amount", "invalid_per_transaction_max_amount", required=False
        )
        if low is not None and high is not None and high < low:
            parser.add("per_transaction_max_amount", "invalid_per_transaction_max_amount")
        parsed["per_transaction_min_amount"], parsed["per_transaction_max_amount"] = low, high
    group_field = group_keys_field(properties)
    keys = properties.get(group_field)
    # Lago (charges/validators/base_service.rb): null or [] is no grouping; else a list of non-empty strings.
    if keys is not None and keys != [] and not (
        isinstance(keys, list) and all(isinstance(key, str) and key.strip() for key in keys)
    ):
        parser.add(group_field, "invalid_type")
    return parsed, parser.errors


def validate_properties(charge_model: str, properties: object) -> dict[str, list[str]]:
    """Return Lago error codes per field ({} when valid), for a 422 `error_details` body.

    Money values and rates accept decimal strings, ints or Decimals, non-negative;
    counts (`package_size`, `free_units`, `free_units_per_events`) accept ints or
    digit strings. JSON floats are `value_is_invalid`; absent required values are
    `value_is_mandatory`; the rest uses Lago's `invalid_<field>` codes.
    """
    return _parse_properties(charge_model, properties)[1]


# --------------------------------------------------------------------------- pricing


@dataclass(frozen=True)
class ChargeResult:
    units: Decimal
    precise_amount: Decimal  # major units, unrounded
    amount_cents: int  # minor units, precise_amount rounded half-up once
    details: dict[str, Any] = field(default_factory=dict)  # Lago-like amount_details, Decimal values


def _graduated(units: Decimal, ranges: Sequence[_Range]) -> tuple[Decimal, list[dict[str, Any]]]:
    # Tier k holds units in (previous to_value, to_value]: for classic and adjacent ranges
    # alike (lago-api range_graduated_service.rb: tier [0,10] holds 10, [11,20] the next 10).
    total, tiers, lower = ZERO, [], ZERO
    for tier in ranges:
        top = units if tier.to_value is None else min(units, tier.to_value)
        tier_units = max(ZERO, top - lower)
        amount = tier_units * tier.per_unit_amount + (tier.flat_amount if tier_units > 0 else ZERO)
        tiers.append(
            {"from_value": tier.from_value, "to_value": tier.to_value, "units": tier_units, "amount": amount,
             "per_unit_amount": tier.per_unit_amount, "flat_amount": tier.flat_amount if tier_units > 0 else ZERO}
        )
        total += amount
        if tier.to_value is None or units <= tier.to_value:
            break
        lower = tier.to_value
    return total, tiers


def _graduated_percentage(units: Decimal, ranges: Sequence[_Range]) -> tuple[Decimal, list[dict[str, Any]]]:
    # Graduated tiers priced at a percentage of their units (lago-api graduated_percentage_service.rb, e.g. units
    # are amounts of money): the tiers and flat fees as graduated, each tier's units × rate / 100.
    # Deviation from Lago, as for graduated: no flat fee without units (Lago bills the first tier's at zero).
    scaled = [_Range(tier.from_value, tier.to_value, tier.per_unit_amount / 100, tier.flat_amount) for tier in ranges]
    total, tiers = _graduated(units, scaled)
    return total, [
        {"from_value": tier["from_value"], "to_value": tier["to_value"], "units": tier["units"],
         "rate": rate.per_unit_amount, "flat_amount": tier["flat_amount"],
         "per_unit_total_amount": tier["amount"] - tier["flat_amount"], "amount": tier["amount"]}
        for tier, rate in zip(tiers, ranges)
    ]


def _volume(units: Decimal, ranges: Sequence[_Range]) -> tuple[Decimal, dict[str, Any]]:
    # All units at the tier whose (previous to_value, to_value] holds the total; with no
    # units Lago still bills the first tier's flat amount (volume_service.rb).
    chosen, lower = ranges[0], ZERO
    for tier in ranges:
        chosen = tier
        if tier.to_value is None or units <= tier.to_value:
            break
        lower = tier.to_value
    billed_units = max(units, ZERO)
    amount = billed_units * chosen.per_unit_amount + chosen.flat_amount
    return amount, {"from_value": chosen.from_value, "to_value": chosen.to_value, "lower_bound": lower,
                    "per_unit_amount": chosen.per_unit_amount, "flat_amount": chosen.flat_amount}


def _package(units: Decimal, amount: Decimal, size: int, free: Decimal) -> tuple[Decimal, dict[str, Any]]:
    paid_units = max(ZERO, units - free)
    packages = (paid_units / size).to_integral_value(ROUND_CEILING)
    return packages * amount, {"free_units": min(max(units, ZERO), free), "paid_units": paid_units, "packages": packages,
                               "package_size": size, "package_amount": amount}


def _percentage_needs_events(p: Mapping[str, Any]) -> bool:
    fixed, free_total = p["fixed_amount"] or ZERO, p["free_units_per_total_aggregation"] or ZERO
    return bool(
        (p["free_units_per_events"] or 0) > 0
        or p["per_transaction_min_amount"] is not None
        or p["per_transaction_max_amount"] is not None
        or (free_total > 0 and fixed > 0)
    )


def needs_per_event_amounts(*, charge_model: ChargeModel | str, properties: Mapping[str, Any]) -> bool:
    """Return whether `price_charge` needs `per_event_amounts` for this charge (percentage with free events,
    per-transaction min/max, or a free total with a fixed fee). Invalid properties: False (pricing refuses them)."""
    if charge_model != ChargeModel.PERCENTAGE:
        return False
    parsed, errors = _parse_properties(charge_model, properties)
    return not errors and _percentage_needs_events(parsed)


def _percentage(
    units: Decimal, events_count: int, per_event: Sequence[Decimal] | None, p: Mapping[str, Any]
) -> tuple[Decimal, dict[str, Any]]:
    rate, fixed = p["rate"], p["fixed_amount"] or ZERO
    free_events = p["free_units_per_events"] or 0
    free_total = p["free_units_per_total_aggregation"] or ZERO
    low, high = p["per_transaction_min_amount"], p["per_transaction_max_amount"]
    if _percentage_needs_events(p) and per_event is None:
        raise ValueError("these percentage properties need per_event_amounts")
    if low is not None or high is not None:
        # Per transaction (lago percentage_service.rb compute_amount_with_transaction_min_max).
        # Deviation from Lago: an event is free only while *both* set allowances last;
        # Lago keeps granting the free amount after the free events run out.
        remaining_events, remaining_free, total, paid_events = free_events, free_total, ZERO, 0
        limited_by_events, limited_by_amount = free_events > 0, free_total > 0
        for value in per_event:
            if (limited_by_events or limited_by_amount) and (not limited_by_events or remaining_events > 0) and (
                not limited_by_amount or remaining_free > 0
            ):
                remaining_events -= 1
                if not limited_by_amount:
                    continue
                if remaining_free > value:
                    remaining_free -= value
                    continue
                value, remaining_free, remaining_events = value - remaining_free, ZERO, 0
            amount = value * rate / 100 + fixed
            if low is not None and amount < low:
                amount = low
            elif high is not None and amount > high:
                amount = high
            total += amount
            paid_events += 1
        return total, {"rate": rate, "paid_events": paid_events, "per_transaction_min_max": True}

    if units == 0:
        return ZERO, {"rate": rate, "free_units": ZERO, "paid_units": ZERO, "paid_events": 0}
    # Aggregate form: free units = the first N events' values, capped at the free total
    # (whichever allowance runs out first; Lago free_units_value).
    prefix = list(_running_totals(per_event)) if per_event is not None else []
    if free_events > 0:
        free_value = prefix[min(free_events, len(prefix)) - 1] if prefix else ZERO
        if free_total > 0:
            free_value = min(free_value, free_total)
    else:
        free_value = min(units, free_total) if free_total > 0 else ZERO
    paid_units = max(ZERO, units - free_value)
    free_count_candidates = []
    if free_events > 0:
        free_count_candidates.append(free_events)
    if free_total > 0 and per_event is not None:
        free_count_candidates.append(sum(1 for running in prefix if running < free_total))
    free_count = min(min(free_count_candidates, default=0), events_count)
    paid_events = events_count - free_count
    amount = paid_units * rate / 100 + fixed * paid_events
    return amount, {
        "rate": rate,
        "free_units": free_value,
        "paid_units": paid_units,
        "free_events": free_count,
        "paid_events": paid_events,
        "fixed_fee_total_amount": fixed * paid_events,
    }


def _running_totals(values: Sequence[Decimal]) -> Iterable[Decimal]:
    total = ZERO
    for value in values:
        total += value
        yield total


@dataclass(frozen=True)
class ChargePricing:
    """A charge's properties checked and parsed once (`charge_pricing`), to price many periods' usage with."""

    charge_model: ChargeModel
    parsed: Mapping[str, Any]


def charge_pricing(charge_model: ChargeModel | str, properties: Mapping[str, Any]) -> ChargePricing:
    """Check and parse a charge's properties: TypeError for a float anywhere, ValueError for properties
    `validate_properties` rejects."""
    _reject_floats(properties)
    parsed, errors = _parse_properties(charge_model, properties)
    if errors:
        raise ValueError(f"invalid {charge_model} properties: {errors}")
    return ChargePricing(ChargeModel(charge_model), parsed)


def price_charge(
    *,
    charge_model: ChargeModel | str,
    properties: Mapping[str, Any],
    units: Decimal,
    events_count: int,
    currency: str,
    per_event_amounts: Sequence[Decimal] | None = None,
    events_amount: Decimal | None = None,
) -> ChargeResult:
    """Price one charge for one period from aggregated totals, rounding once.

    `units` is the aggregation result (major quantity); `events_count` the number
    of events behind it (percentage `fixed_amount` is per event);
    `per_event_amounts` the events' values in time order, needed only by
    percentage `free_units_per_events`, `per_transaction_min/max_amount` and
    (with a fixed fee) `free_units_per_total_aggregation`. Raises TypeError for a
    float anywhere, ValueError for properties `validate_properties` rejects.
    Negative units (refund events) price linearly for standard and percentage
    and as zero for graduated/volume/package.
    `events_amount`: for `dynamic`, the events' own prices summed (major units, unrounded).
    """
    return price_charge_with(
        charge_pricing(charge_model, properties),
        units=units, events_count=events_count, currency=currency, per_event_amounts=per_event_amounts,
        events_amount=events_amount,
    )


def price_charge_with(
    pricing: ChargePricing,
    *,
    units: Decimal,
    events_count: int,
    currency: str,
    per_event_amounts: Sequence[Decimal] | None = None,
    events_amount: Decimal | None = None,
) -> ChargeResult:
    """`price_charge` with the charge's properties already parsed: the close prices the same few charges for
    thousands of subscriptions."""
    per_event_amounts = _checked_usage(units, events_count, per_event_amounts)
    currency_exponent(currency)
    if pricing.charge_model is ChargeModel.DYNAMIC:
        if events_amount is None:
            raise ValueError("dynamic charges need events_amount")
        _require_decimal(events_amount, "events_amount")
    return _price(pricing, units, events_count, per_event_amounts, currency, events_amount)


def _checked_usage(
    units: Decimal, events_count: int, per_event_amounts: Sequence[Decimal] | None
) -> tuple[Decimal, ...] | None:
    _require_decimal(units, "units")
    _require_int(events_count, "events_count")
    if events_count < 0:
        raise ValueError("events_count must be >= 0")
    if per_event_amounts is not None:
        per_event_amounts = tuple(per_event_amounts)
        for index, value in enumerate(per_event_amounts):
            _require_decimal(value, f"per_event_amounts[{index}]")
        if len(per_event_amounts) != events_count:
            raise ValueError("per_event_amounts must hold one value per event")
    return per_event_amounts


def _price(
    pricing: ChargePricing, units: Decimal, events_count: int, per_event_amounts: tuple | None, currency: str,
    events_amount: Decimal | None = None,
) -> ChargeResult:
    model, parsed = pricing.charge_model, pricing.parsed
    details: dict[str, Any]
    if model is ChargeModel.STANDARD:
        amount, details = units * parsed["amount"], {"unit_amount": parsed["amount"]}
    elif model is ChargeModel.GRADUATED:
        amount, tiers = _graduated(units, parsed["ranges"])
        details = {"graduated_ranges": tiers}
    elif model is ChargeModel.VOLUME:
        amount, details = _volume(units, parsed["ranges"])
    elif model is ChargeModel.GRADUATED_PERCENTAGE:
        amount, tiers = _graduated_percentage(units, parsed["ranges"])
        details = {"graduated_percentage_ranges": tiers}
    elif model is ChargeModel.DYNAMIC:
        # lago-api dynamic_service.rb: the events' prices summed; nothing without units.
        amount, details = (events_amount if units else ZERO), {}
    elif model is ChargeModel.PACKAGE:
        amount, details = _package(units, parsed["amount"], parsed["package_size"], parsed["free_units"])
    else:
        amount, details = _percentage(units, events_count, per_event_amounts, parsed)
    return ChargeResult(
        units=units, precise_amount=amount, amount_cents=to_minor_units(amount, currency), details=details
    )


# --------------------------------------------------------------------------- fees over time


@dataclass(frozen=True)
class Fee:
    precise_amount: Decimal  # major units, unrounded
    amount_cents: int  # minor units, half-up, rounded once
    days: int = 0  # billed (or credited) local days; 0 when not day-based
    period_days: int = 0  # days in the full period


def _prorated_fee(amount_cents: int, currency: str, period: Period, first: date, stop: date) -> Fee:
    days = max(0, (min(stop, period.end) - max(first, period.start)).days)
    # Multiply before dividing: amount × days / period_days is exact whenever it terminates,
    # so a true half cent is never lost to a pre-rounded ratio.
    precise_cents = Decimal(amount_cents) * days / period.days
    precise = precise_cents.scaleb(-currency_exponent(currency))
    return Fee(precise, to_minor_units(precise, currency), days, period.days)


def trial_end_date(*, started_on: date, trial_days: int) -> date:
    """Return the first paid day after a `trial_days` free trial starting `started_on`."""
    _require_date(started_on, "started_on")
    if _require_int(trial_days, "trial_days") < 0:
        raise ValueError("trial_days must be >= 0")
    return started_on + timedelta(days=trial_days)


def base_fee_for_period(
    *,
    amount_cents: int,
    currency: str,
    period: Period,
    active_from: date,
    active_to: date | None = None,
    trial_ends_on: date | None = None,
) -> Fee:
    """Return the plan's base fee for the active, paid days of `period` (daily proration).

    `amount_cents` is the plan's full-period price (minor units). Active days are
    [active_from, active_to) (exclusive end; None = to the period end); days before
    `trial_ends_on` (first paid day) are free. In advance the caller bills this at
    the start of the active part of the period with `active_to=None`; in arrears
    at the period end (or termination) with the real `active_to`. A termination
    on day D counts D as used (Lago): pass `active_to = D + 1 day`.
    """
    _require_int(amount_cents, "amount_cents")
    _require_date(active_from, "active_from")
    first = active_from if trial_ends_on is None else max(active_from, _require_date(trial_ends_on, "trial_ends_on"))
    stop = period.end if active_to is None else _require_date(active_to, "active_to")
    return _prorated_fee(amount_cents, currency, period, first, stop)


def base_fee_billing_date(*, pay_in_advance: bool, period: Period, active_from: date) -> date:
    """Return the local day the base fee for `period` is invoiced.

    In advance: the first active day of the period. In arrears: `period.end`, the
    day after the period's last day.
    """
    if pay_in_advance:
        return max(period.start, _require_date(active_from, "active_from"))
    return period.end


def _unused_credit(
    amount_cents: int, currency: str, period: Period, unused_from: date, trial_ends_on: date | None
) -> Fee:
    _require_int(amount_cents, "amount_cents")
    if trial_ends_on is not None:
        # Trial days were never paid for, so they are never credited.
        unused_from = max(unused_from, _require_date(trial_ends_on, "trial_ends_on"))
    return _prorated_fee(amount_cents, currency, period, unused_from, period.end)


def termination_credit(
    *, amount_cents: int, currency: str, period: Period, terminated_on: date, trial_ends_on: date | None = None
) -> Fee:
    """Return the credit for an in-advance base fee after a termination on `terminated_on`.

    The termination day counts as used; the days after it up to the period end are
    credited at the full period's daily price (Lago credit_notes/create_from_termination.rb).
    """
    if _require_date(terminated_on, "terminated_on") not in period:
        raise ValueError(f"{terminated_on} is outside {period}")
    return _unused_credit(amount_cents, currency, period, terminated_on + timedelta(days=1), trial_ends_on)


def upgrade_credit(
    *, amount_cents: int, currency: str, period: Period, upgraded_on: date, trial_ends_on: date | None = None
) -> Fee:
    """Return the credit for the unused part of an in-advance base fee after an upgrade.

    The upgrade applies at once and the upgrade day belongs to the new plan, so the
    credit covers [upgraded_on, period.end) (Lago: `billed_from -= 1.day if upgrade`).
    The new plan is billed with `base_fee_for_period(active_from=upgraded_on)`.
    """
    if _require_date(upgraded_on, "upgraded_on") not in period:
        raise ValueError(f"{upgraded_on} is outside {period}")
    return _unused_credit(amount_cents, currency, period, upgraded_on, trial_ends_on)


def is_upgrade(
    *, current_amount_cents: int, current_interval: Interval | str, new_amount_cents: int, new_interval: Interval | str
) -> bool:
    """Return True when the new plan costs at least as much per year (Lago create_service.rb).

    Upgrades apply at once; downgrades at the end of the current period
    (`plan_change_effective_on`).
    """
    current = _require_int(current_amount_cents, "current_amount_cents") * PERIODS_PER_YEAR[Interval(current_interval)]
    new = _require_int(new_amount_cents, "new_amount_cents") * PERIODS_PER_YEAR[Interval(new_interval)]
    return new >= current


def plan_change_effective_on(*, upgrade: bool, changed_on: date, period: Period) -> date:
    """Return the first local day on the new plan: at once for an upgrade, next period for a downgrade."""
    if _require_date(changed_on, "changed_on") not in period:
        raise ValueError(f"{changed_on} is outside {period}")
    return changed_on if upgrade else period.end


def charge_minimum_true_up(
    *,
    min_amount_cents: int,
    charge_amount_cents: int,
    charge_precise_amount: Decimal,
    currency: str,
    period: Period | None = None,
    active_from: date | None = None,
    active_to: date | None = None,
) -> Fee:
    """Return the true-up fee lifting a charge to its per-period minimum (0 when above it).

    The minimum is prorated by active days when `period` is given. The true-up's cents
    make charge + true-up equal the rounded prorated minimum exactly; its precise
    amount is the unrounded difference.
    """
    _require_int(min_amount_cents, "min_amount_cents")
    _require_int(charge_amount_cents, "charge_amount_cents")
    _require_decimal(charge_precise_amount, "charge_precise_amount")
    if min_amount_cents < 0:
        raise ValueError("min_amount_cents must be >= 0")
    if period is None:
        minimum = Fee(from_minor_units(min_amount_cents, currency), min_amount_cents)
    else:
        first = period.start if active_from is None else active_from
        minimum = _prorated_fee(min_amount_cents, currency, period, first, active_to or period.end)
    cents = max(0, minimum.amount_cents - charge_amount_cents)
    precise = max(ZERO, minimum.precise_amount - charge_precise_amount) if cents else ZERO
    return Fee(precise, cents, minimum.days, minimum.period_days)
