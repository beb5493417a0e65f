"""Projected usage (Lago's GET /customers/{id}/projected_usage): the current period's usage carried to its end.

Each charge's units so far are scaled by the period's length over the time elapsed since the period (or the
subscription) began, then priced by the close's own rating, rounded once per line; a recurring metric's units
carry over as they are. A charge whose price needs every event's own amount (percentage with per-transaction
limits or free events) cannot be re-priced from a projected total: its amount so far is scaled instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from .fees import Line
from .rating import needs_per_event_amounts, price_charge

UNITS_PLACES = Decimal("0.0001")


@dataclass(frozen=True)
class ProjectedLine:
    line: Line
    projected_units: Decimal
    projected_amount_cents: int


def projection_ratio(*, started: datetime, period_end: datetime, now: datetime) -> Decimal:
    """How much longer the whole period is than the part of it already used (1 once the period is over)."""
    elapsed = (min(now, period_end) - started).total_seconds()
    total = (period_end - started).total_seconds()
    if elapsed <= 0 or total <= elapsed:
        return Decimal(1)
    return Decimal(str(total)) / Decimal(str(elapsed))


def project_lines(lines: list[Line], *, ratio: Decimal) -> list[ProjectedLine]:
    out = []
    for line in lines:
        charge = line.charge
        if charge is None:
            continue
        if charge.billable_metric.recurring or ratio == 1:
            out.append(ProjectedLine(line, line.units, line.amount_cents))
            continue
        units = (line.units * ratio).quantize(UNITS_PLACES, ROUND_HALF_UP)
        # Priced by each event's own amount (or price): the amount so far is scaled, not re-priced.
        if charge.charge_model == "dynamic" or needs_per_event_amounts(
            charge_model=charge.charge_model, properties=line.properties
        ):
            amount = int((Decimal(line.amount_cents) * ratio).quantize(Decimal(1), ROUND_HALF_UP))
        else:
            events = int((Decimal(line.events_count) * ratio).quantize(Decimal(1), ROUND_HALF_UP))
            amount = price_charge(charge_model=charge.charge_model, properties=line.properties, units=units,
                                  events_count=events, currency=line.currency).amount_cents
        out.append(ProjectedLine(line, units, amount))
    return out
