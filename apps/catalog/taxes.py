"""Canadian sales tax by province and date, rounded exactly as Odoo's `round_per_line` does.

Pure module: no ORM, no I/O. The rates are data (catalog.Tax rows, dated by `valid_from`, seeded by catalog
migrations 0002 and 0003 with the codes of Odoo's chart template `ca_2023`, research/odoo.md §5.1); billing
reads them through `apps.invoicing.selectors.tax_schedule`. The rounding rule comes from §5.5.
Amounts are integer minor units of the invoice currency; rates are percents.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Iterable, Mapping, Sequence

from apps.core.money import minor_units_of


@dataclass(frozen=True)
class TaxRate:
    code: str  # Odoo `ca_2023` template id, e.g. "hst_sale_tax_13" (the ledger maps it to account.<co>_<code>)
    name: str
    rate: Decimal  # percent, e.g. Decimal("9.975")

    def __post_init__(self) -> None:
        if not isinstance(self.rate, Decimal):
            raise TypeError(f"tax rate must be Decimal, not {type(self.rate).__name__}")


# Components of Canadian sales tax: at most one rate of each is in force for a province on a date.
COMPONENTS = ("gst", "hst", "pst", "qst")


@dataclass(frozen=True)
class ScheduledTax:
    """One hub-wide tax row (catalog.Tax) as billing reads it: a rate, where it applies, and from when."""

    rate: TaxRate
    component: str  # one of COMPONENTS
    country: str  # ISO 3166-1 alpha-2
    provinces: tuple[str, ...]  # ISO 3166-2 subdivision codes without the country prefix
    valid_from: date | None  # None: since always


class TaxSchedule:
    """The sales taxes in force by place of supply and date, from the hub's tax rows.

    For each component (GST, HST, PST, QST) a province charges the row listing that province with the latest
    `valid_from` on or before the tax point date: a rate change is a new row from its date (Nova Scotia's HST
    went from 15% to 14% on 2025-04-01: `hst_sale_tax_15` lists NS since always, `hst_sale_tax_14` from then).
    Children of a group (GST + QST) are separate rates, as Odoo rounds each on its own line.
    """

    def __init__(self, taxes: Iterable[ScheduledTax]) -> None:
        self._by_place: dict[tuple[str, str], list[ScheduledTax]] = {}
        for tax in taxes:
            if tax.component not in COMPONENTS:
                raise ValueError(f"tax {tax.rate.code}: component must be one of {COMPONENTS}, not {tax.component!r}")
            for province in tax.provinces:
                self._by_place.setdefault((tax.country.upper(), province.upper()), []).append(tax)

    def provinces(self, country: str = "CA") -> list[str]:
        return sorted(province for place_country, province in self._by_place if place_country == country.upper())

    def rates_for(self, country: str, province: str | None, *, on: date) -> list[TaxRate]:
        """Return the sales taxes for a customer's place of supply on the tax point date `on`.

        `country` is ISO 3166-1 alpha-2; a country with no tax rows is untaxed. A province of a taxed country
        must be one its rows list (ISO 3166-2 code without the prefix: AB, BC, ..., YT).
        """
        if not isinstance(country, str) or len(country) != 2 or not country.isalpha():
            raise ValueError(f"country must be an ISO 3166-1 alpha-2 code, got {country!r}")
        known = self.provinces(country)
        if not known:
            return []
        code = (province or "").upper()
        if code not in known:
            raise ValueError(f"unknown province {province!r} of {country.upper()}; expected one of {', '.join(known)}")
        in_force: dict[str, ScheduledTax] = {}
        for tax in self._by_place[(country.upper(), code)]:
            if tax.valid_from is not None and tax.valid_from > on:
                continue
            current = in_force.get(tax.component)
            if current is None or (tax.valid_from or date.min) > (current.valid_from or date.min):
                in_force[tax.component] = tax
        return [in_force[component].rate for component in COMPONENTS if component in in_force]


def rate_percent(value: Decimal) -> Decimal:
    """A stored rate (numeric(9,5): 13.00000) as written on lines: 13, 9.975, without trailing zeros."""
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()


def line_tax_cents(amount_cents: int, rate: TaxRate) -> int:
    """Return one line's tax in minor units: amount × rate / 100, rounded half-up (away from zero)."""
    if isinstance(amount_cents, bool) or not isinstance(amount_cents, int):
        raise TypeError(f"amount_cents must be int, not {type(amount_cents).__name__}")
    return minor_units_of(Decimal(amount_cents) * rate.rate / 100)


def applied_rates(applied_taxes: Iterable[dict]) -> list[TaxRate]:
    """The rates a fee was taxed at, read back from its `applied_taxes` JSON."""
    return [TaxRate(item["code"], item["name"], Decimal(item["rate"])) for item in applied_taxes or ()]


def amount_tax_cents(amount_cents: int, applied_taxes: Iterable[dict]) -> int:
    """Tax on part of a fee (a credit, a reversal) at the fee's own rates, rounded per line and rate."""
    return sum(line_tax_cents(amount_cents, rate) for rate in applied_rates(applied_taxes))


@dataclass(frozen=True)
class TaxLine:
    code: str
    name: str
    rate: Decimal  # percent
    base_amount_cents: int  # Σ rounded line amounts this tax applies to (minor units)
    tax_amount_cents: int  # Σ per-line rounded taxes (minor units)


@dataclass(frozen=True)
class InvoiceTotals:
    untaxed_amount_cents: int  # Σ line amounts (minor units)
    tax_amount_cents: int  # Σ tax_lines[].tax_amount_cents (minor units)
    total_amount_cents: int  # untaxed + tax (minor units)
    tax_lines: tuple[TaxLine, ...]


def tax_lines(fees: Iterable[tuple[int, Sequence[TaxRate]]]) -> list[TaxLine]:
    """Return one summary per tax code, in first-seen order, as Odoo `round_per_line` computes it.

    The rule (research/odoo.md §5.5, Odoo's default `tax_calculation_rounding_method`):
    each fee is already a line rounded to the cent (`amount_cents`, sent to Odoo as
    quantity 1 × price_unit); for every tax on that line, tax = amount_cents × rate / 100,
    rounded half-up to the minor unit *on that line* (children of a group such as
    GST+QST are rounded separately); the invoice's tax per code is the integer sum
    of those per-line amounts. Nothing is rounded twice and nothing is re-rounded
    globally, so Σ tax lines == invoice tax exactly (unlike Lago's global rounding,
    research/lago-api.md §3).
    """
    summary: dict[str, list] = {}
    for amount_cents, rates in fees:
        seen: set[str] = set()
        for rate in rates:
            if rate.code in seen:
                raise ValueError(f"tax {rate.code} applied twice to one line")
            seen.add(rate.code)
            entry = summary.setdefault(rate.code, [rate, 0, 0])
            if entry[0] != rate:
                raise ValueError(f"tax code {rate.code} used with two different rates")
            entry[1] += amount_cents
            entry[2] += line_tax_cents(amount_cents, rate)
    return [
        TaxLine(code=rate.code, name=rate.name, rate=rate.rate, base_amount_cents=base, tax_amount_cents=tax)
        for rate, base, tax in summary.values()
    ]


def invoice_totals(fees: Sequence[tuple[int, Sequence[TaxRate]]]) -> InvoiceTotals:
    """Return untaxed, tax and total in minor units for fee lines (amount_cents, taxes)."""
    lines = tax_lines(fees)
    untaxed = 0
    for amount_cents, _ in fees:
        if isinstance(amount_cents, bool) or not isinstance(amount_cents, int):
            raise TypeError(f"amount_cents must be int, not {type(amount_cents).__name__}")
        untaxed += amount_cents
    tax = sum(line.tax_amount_cents for line in lines)
    return InvoiceTotals(
        untaxed_amount_cents=untaxed, tax_amount_cents=tax, total_amount_cents=untaxed + tax, tax_lines=tuple(lines)
    )


def credit_applied_taxes(
    *,
    amount_cents: int,
    fee_amount_cents: int,
    fee_applied_taxes: Iterable[dict],
    credited_amount_cents: int,
    credited_taxes: Mapping[str, int],
) -> list[dict]:
    """Return the tax per rate of crediting `amount_cents` more of a fee, as `applied_taxes` JSON items.

    `credited_amount_cents` and `credited_taxes` (code -> cents) are what earlier credits took from this fee.
    Rounding each credit on its own can credit more tax than was charged (an 8¢ fee taxed 1¢, credited as
    two 4¢ notes, would credit 2¢), so the rounding is cumulative: after this credit, the tax credited at a
    rate is the rate applied once, half-up, to everything credited from the fee so far, never more than the
    fee was charged at that rate; the credit that reaches the fee's full amount takes exactly what is left.
    Any split of a fee into credits therefore credits exactly its tax, and each credit's tax is within a
    cent per rate of its own per-line rounding.
    """
    credited_after = credited_amount_cents + amount_cents
    if amount_cents <= 0 or credited_after > fee_amount_cents:
        raise ValueError(f"cannot credit {amount_cents} of a fee of {fee_amount_cents} with {credited_amount_cents} credited")
    out = []
    for item in fee_applied_taxes or ():
        rate = TaxRate(item["code"], item["name"], Decimal(item["rate"]))
        charged = int(item["amount_cents"]) if "amount_cents" in item else line_tax_cents(fee_amount_cents, rate)
        left = charged - credited_taxes.get(rate.code, 0)
        if credited_after == fee_amount_cents:
            tax = left
        else:
            tax = line_tax_cents(credited_after, rate) - credited_taxes.get(rate.code, 0)
        out.append({"code": rate.code, "name": rate.name, "rate": item["rate"], "amount_cents": max(0, min(tax, left))})
    return out


def credited_item_taxes(amount_cents: int, item_applied_taxes: Iterable[dict], fee_applied_taxes: Iterable[dict]) -> dict[str, int]:
    """Return code -> tax cents of one credit-note item: its stored per-rate taxes, or for items written before
    they were stored, the per-line rule they were computed with."""
    stored = {item["code"]: int(item["amount_cents"]) for item in item_applied_taxes or ()}
    if stored:
        return stored
    return {rate.code: line_tax_cents(amount_cents, rate) for rate in applied_rates(fee_applied_taxes)}
