"""Canadian sales tax by province, rounded exactly as Odoo's `round_per_line` does.

Pure module: no ORM, no I/O. Rates and Odoo template ids come from
`research/odoo.md` §5.1 (chart template `ca_2023`); the rounding rule from §5.5.
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


GST_5 = TaxRate("gst_sale_tax_5", "5% GST", Decimal("5"))
HST_13 = TaxRate("hst_sale_tax_13", "13% HST", Decimal("13"))
HST_14 = TaxRate("hst_sale_tax_14", "14% HST (NS)", Decimal("14"))
HST_15 = TaxRate("hst_sale_tax_15", "15% HST", Decimal("15"))
PST_6_SK = TaxRate("pst_sale_tax_6", "6% PST SK", Decimal("6"))
PST_7_BC = TaxRate("pst_sale_tax_7_bc", "7% PST BC", Decimal("7"))
PST_7_MB = TaxRate("pst_sale_tax_7_mb", "7% PST MB", Decimal("7"))  # Manitoba's RST
QST_9975 = TaxRate("qst_sale_tax_9975", "9.975% QST", Decimal("9.975"))

# Nova Scotia HST went from 15% to 14% on 2025-04-01 (odoo.md §5.1, odoo PR 219117).
NS_HST_14_FROM = date(2025, 4, 1)

# ISO 3166-2:CA subdivision codes -> taxes charged (group children listed separately,
# as Odoo rounds each child on its own line; no tax-on-tax: include_base_amount=False).
PROVINCE_TAXES: dict[str, tuple[TaxRate, ...]] = {
    "AB": (GST_5,),
    "BC": (GST_5, PST_7_BC),
    "MB": (GST_5, PST_7_MB),
    "NB": (HST_15,),
    "NL": (HST_15,),
    "NS": (HST_14,),
    "NT": (GST_5,),
    "NU": (GST_5,),
    "ON": (HST_13,),
    "PE": (HST_15,),
    "QC": (GST_5, QST_9975),
    "SK": (GST_5, PST_6_SK),
    "YT": (GST_5,),
}


def taxes_for(country: str, province: str | None, *, on: date | None = None) -> list[TaxRate]:
    """Return the sales taxes for a customer's place of supply.

    `country` is ISO 3166-1 alpha-2; outside Canada the list is empty. For Canada,
    `province` must be an ISO 3166-2 code without the "CA-" prefix (AB, BC, ..., PE, YT).
    `on` is the tax point date (only Nova Scotia's 2025 change depends on it); None
    means the current rates.
    """
    if not isinstance(country, str) or len(country) != 2 or not country.isalpha():
        raise ValueError(f"country must be an ISO 3166-1 alpha-2 code, got {country!r}")
    if country.upper() != "CA":
        return []
    code = (province or "").upper()
    if code not in PROVINCE_TAXES:
        raise ValueError(f"unknown Canadian province {province!r}; expected one of {', '.join(PROVINCE_TAXES)}")
    if code == "NS" and on is not None and on < NS_HST_14_FROM:
        return [HST_15]
    return list(PROVINCE_TAXES[code])


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
