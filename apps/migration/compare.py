"""Compare one customer-period's invoice on the hub with Lago's: per fee, taxes per rate, totals. Pure: no ORM,
no I/O; money in integer minor units, units and rates as Decimal. Zero tolerance: one cent is a difference."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

MISSING_IN_HUB = "missing_in_hub"
MISSING_IN_LAGO = "missing_in_lago"
UNITS_DIFFER = "units_differ"
PRICE_DIFFER = "price_differ"
TAX_DIFFER = "tax_differ"
TOTAL_DIFFER = "total_differ"
KINDS = (MISSING_IN_HUB, MISSING_IN_LAGO, UNITS_DIFFER, PRICE_DIFFER, TAX_DIFFER, TOTAL_DIFFER)
TOTALS = ("fees_amount_cents", "taxes_amount_cents", "total_amount_cents")


@dataclass(frozen=True)
class FeeLine:
    subscription: str  # the subscription's external id ("" for a fee without one)
    fee_type: str  # subscription (base fee) | charge | other Lago item types
    code: str  # plan code for a base fee, metric code for a charge
    units: Decimal
    amount_cents: int

    @property
    def key(self) -> str:
        return f"{self.subscription}/{self.fee_type}:{self.code}"


@dataclass(frozen=True)
class InvoiceSide:
    number: str
    currency: str
    fees: tuple[FeeLine, ...]
    taxes: dict[Decimal, int]  # rate (percent) -> tax amount
    fees_amount_cents: int
    taxes_amount_cents: int
    total_amount_cents: int


@dataclass(frozen=True)
class Difference:
    kind: str
    item: str  # fee key, "tax 13%", a total's name, or "invoice"
    hub: str = ""
    lago: str = ""
    delta_cents: int = 0  # hub − Lago, where money is compared


@dataclass
class _Merged:
    units: Decimal = Decimal(0)
    amount_cents: int = 0
    count: int = 0


def _merged(fees: tuple[FeeLine, ...]) -> dict[str, _Merged]:
    """Fees by key; several fees under one key (filters, groups) are compared as their sum."""
    out: dict[str, _Merged] = {}
    for fee in fees:
        line = out.setdefault(fee.key, _Merged())
        line.units += fee.units
        line.amount_cents += fee.amount_cents
        line.count += 1
    return out


def _empty(line: _Merged | None) -> bool:
    # A fee of nothing on one side and no fee on the other agree (Lago may skip a zero charge fee).
    return line is None or (line.units == 0 and line.amount_cents == 0)


def _rate(rate: Decimal) -> str:
    return f"tax {rate.normalize():f}%"


def compare(hub: InvoiceSide | None, lago: InvoiceSide | None) -> list[Difference]:
    """Every difference between the two sides of one customer-period, classified; [] when they agree."""
    if hub is None and lago is None:
        return []
    if hub is None:
        return [Difference(MISSING_IN_HUB, "invoice", "", lago.number, -lago.total_amount_cents)]
    if lago is None:
        return [Difference(MISSING_IN_LAGO, "invoice", hub.number, "", hub.total_amount_cents)]
    out: list[Difference] = []
    if hub.currency != lago.currency:
        out.append(Difference(TOTAL_DIFFER, "currency", hub.currency, lago.currency))
    mine, theirs = _merged(hub.fees), _merged(lago.fees)
    for key in sorted(mine.keys() | theirs.keys()):
        a, b = mine.get(key), theirs.get(key)
        if _empty(a) and _empty(b):
            continue
        if a is None:
            out.append(Difference(MISSING_IN_HUB, key, "", f"{b.units} units, {b.amount_cents}", -b.amount_cents))
        elif b is None:
            out.append(Difference(MISSING_IN_LAGO, key, f"{a.units} units, {a.amount_cents}", "", a.amount_cents))
        elif a.units != b.units:
            out.append(Difference(UNITS_DIFFER, key, str(a.units), str(b.units), a.amount_cents - b.amount_cents))
        elif a.amount_cents != b.amount_cents:
            out.append(Difference(PRICE_DIFFER, key, str(a.amount_cents), str(b.amount_cents),
                                  a.amount_cents - b.amount_cents))
    for rate in sorted(hub.taxes.keys() | lago.taxes.keys()):
        a_tax, b_tax = hub.taxes.get(rate, 0), lago.taxes.get(rate, 0)
        if a_tax != b_tax:
            out.append(Difference(TAX_DIFFER, _rate(rate), str(a_tax), str(b_tax), a_tax - b_tax))
    for name in TOTALS:
        a_total, b_total = getattr(hub, name), getattr(lago, name)
        if a_total != b_total:
            out.append(Difference(TOTAL_DIFFER, name, str(a_total), str(b_total), a_total - b_total))
    return out


def pair(hub: dict[tuple, list], lago: dict[tuple, list]) -> list[tuple[tuple, object | None, object | None]]:
    """Match invoices keyed (customer, issuing date, currency): the n-th of each side together, leftovers alone."""
    out = []
    for key in sorted(hub.keys() | lago.keys(), key=str):
        a, b = hub.get(key, []), lago.get(key, [])
        for index in range(max(len(a), len(b))):
            out.append((key, a[index] if index < len(a) else None, b[index] if index < len(b) else None))
    return out
