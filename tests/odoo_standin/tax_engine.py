"""Odoo 19's invoice tax computation for the stand-in, in Python floats as Odoo computes it.

A port, written for this project, of what Odoo 19 (odoo/odoo, branch 19.0) runs when an invoice's lines
change, function by function (names in the docstrings below):

- `odoo/tools/float_utils.py`: `float_round` (HALF-UP), `float_invert`, `float_is_zero`, `float_compare`;
- `addons/account/models/account_tax.py`: `_flatten_taxes_and_sort_them`, `_batch_for_taxes_computation`,
  `_propagate_extra_taxes_base`, `_eval_tax_amount_*`, `_get_tax_details`, `_import_base_line_extra_tax_data`,
  `_prepare_base_line_for_taxes_computation`, `_add_tax_details_in_base_line`,
  `_distribute_delta_amount_smoothly`, `_round_base_lines_tax_details`,
  `_add_accounting_data_to_base_line_tax_details`, `_prepare_tax_lines`;
- driven as `account.move._get_rounded_base_and_tax_lines` / `_sync_tax_lines` / `_compute_amount` and
  `account.move.line._compute_totals` drive them; Monetary fields round to the currency when written.

Floats on purpose: the stand-in checks the hub's Decimal arithmetic against Odoo's float arithmetic, not
against a copy of itself, so nothing here imports the hub.

Left out, because the stand-in has none of it: currency rates (a document is in the company currency at
rate 1, so Odoo's company-currency track equals the document-currency one and only the latter is kept),
reverse-charge repartition (each tax has one 100 % tax repartition line), `code` taxes, special modes,
early-payment, cash-rounding and non-deductible lines, Portugal's total rounding, and keeping manually
edited tax lines (`tax_lines` of `_round_base_lines_tax_details`): every change recomputes from the lines.
"""
from __future__ import annotations

import builtins
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

ROUNDING_METHODS = ("round_per_line", "round_globally")

# ---------------------------------------------------------------------------------------------
# float_utils


_INVERTED = {  # float_utils._INVERTDICT: exact inverses of the usual rounding factors
    1e-1: 1e+1, 1e-2: 1e+2, 1e-3: 1e+3, 1e-4: 1e+4, 1e-5: 1e+5, 1e-6: 1e+6,
    2e-1: 5e+0, 2e-2: 5e+1, 2e-3: 5e+2, 5e-1: 2e+0, 5e-2: 2e+1, 5e-3: 2e+2,
}


def float_invert(value: float) -> float:
    """float_utils.float_invert: 1/value, exact for the usual rounding factors."""
    result = _INVERTED.get(value)
    if result is None:
        coefficient, exponent = f"{value:.15e}".split("e")
        result = float(f"{coefficient}e{-int(exponent)}") / float(coefficient) ** 2
    return result


def _round_half_away(value: float) -> float:
    """float_utils.round: Python 2's round(), ties away from zero, a float (Python 3's rounds ties to even)."""
    rounded = builtins.round(value)
    if builtins.round(value + 1) - rounded != 1:
        return value + math.copysign(0.5, value)
    return math.copysign(rounded, value)


def float_round(value: float, precision_rounding: float) -> float:
    """float_utils.float_round with rounding_method='HALF-UP' (the only one invoices use).

    The value is scaled to units of `precision_rounding` (multiplying by the exact inverse when it is below 1),
    nudged away from zero by 2**(log2|x| - 50), a few ulps, so a decimal tie stored just below it (2.675 is
    2.67499999999999982...) still rounds up, then rounded half away from zero and scaled back.
    """
    if precision_rounding == 0 or value == 0:
        return 0.0
    factor = precision_rounding
    if factor < 1:
        inverse = float_invert(factor)
        normalized = value * inverse
        epsilon = 2 ** (math.log2(abs(normalized)) - 50)
        return _round_half_away(normalized + math.copysign(epsilon, normalized)) / inverse
    normalized = value / factor
    epsilon = 2 ** (math.log2(abs(normalized)) - 50)
    return _round_half_away(normalized + math.copysign(epsilon, normalized)) * factor


def float_is_zero(value: float, precision_rounding: float) -> bool:
    return value == 0.0 or abs(float_round(value, precision_rounding)) < precision_rounding


def float_compare(value1: float, value2: float, precision_rounding: float) -> int:
    if value1 == value2:
        return 0
    delta = float_round(value1, precision_rounding) - float_round(value2, precision_rounding)
    if float_is_zero(delta, precision_rounding):
        return 0
    return -1 if delta < 0.0 else 1


@dataclass(frozen=True)
class Currency:
    """The res.currency helpers the engine uses (`round`, `is_zero`, `compare_amounts`)."""

    id: int
    rounding: float = 0.01
    decimal_places: int = 2

    def round(self, amount: float) -> float:
        return float_round(amount, self.rounding)

    def is_zero(self, amount: float) -> bool:
        return float_is_zero(amount, self.rounding)

    def compare_amounts(self, amount1: float, amount2: float) -> int:
        return float_compare(amount1, amount2, self.rounding)


# ---------------------------------------------------------------------------------------------
# account.tax


@dataclass(frozen=True)
class Tax:
    """An account.tax as the engine reads it; `account_id` is its invoice/refund tax repartition account."""

    id: int
    name: str
    amount: float  # percent, or the fixed amount per unit
    amount_type: str = "percent"  # percent | fixed | division | group
    sequence: int = 1
    price_include: bool = False  # computed in Odoo from price_include_override and the company default
    include_base_amount: bool = False
    is_base_affected: bool = True
    analytic: bool = False
    account_id: int | None = None
    children: tuple[Tax, ...] = ()


def _sort_key(tax: Tax) -> tuple[int, int]:
    return tax.sequence, tax.id


def _union(target: list[Tax], taxes: Iterable[Tax]) -> None:
    """`recordset |= other`: append the records not yet in, keeping the first occurrence's place."""
    for tax in taxes:
        if tax not in target:
            target.append(tax)


def flatten_taxes_and_sort_them(taxes: Sequence[Tax]) -> tuple[list[Tax], dict[int, Tax]]:
    """`_flatten_taxes_and_sort_them`: group children take their group's place, ordered by (sequence, id)."""
    group_per_tax: dict[int, Tax] = {}
    sorted_taxes: list[Tax] = []
    for tax in sorted(dict.fromkeys(taxes), key=_sort_key):
        if tax.amount_type == "group":
            children = sorted(tax.children, key=_sort_key)
            _union(sorted_taxes, children)
            for child in children:
                group_per_tax[child.id] = tax
        else:
            _union(sorted_taxes, [tax])
    return sorted_taxes, group_per_tax


def batch_for_taxes_computation(taxes: Sequence[Tax], special_mode: str | bool = False) -> dict[str, Any]:
    """`_batch_for_taxes_computation`: neighbouring taxes of one kind (e.g. price-included percents) share a
    batch, so an included batch is divided out of the price together."""
    sorted_taxes, group_per_tax = flatten_taxes_and_sort_them(taxes)
    batch_per_tax: dict[int, list[Tax]] = {}
    batch: list[Tax] = []
    is_base_affected = False
    for tax in reversed(sorted_taxes):
        if batch:
            same_batch = (
                tax.amount_type == batch[0].amount_type
                and (special_mode or tax.price_include == batch[0].price_include)
                and tax.include_base_amount == batch[0].include_base_amount
                and ((tax.include_base_amount and not is_base_affected) or not tax.include_base_amount)
            )
            if not same_batch:
                for batch_tax in batch:
                    batch_per_tax[batch_tax.id] = batch
                batch = []
        is_base_affected = tax.is_base_affected
        _union(batch, [tax])
    for batch_tax in batch:
        batch_per_tax[batch_tax.id] = batch
    return {"batch_per_tax": batch_per_tax, "group_per_tax": group_per_tax, "sorted_taxes": sorted_taxes}


def _propagate_extra_taxes_base(sorted_taxes: list[Tax], tax: Tax, taxes_data: dict[int, dict[str, Any]],
                                special_mode: str | bool = False) -> None:
    """`_propagate_extra_taxes_base`: a computed tax that affects others' bases adds to their extra bases."""
    def taxes_before() -> Iterable[Tax]:
        for other in sorted_taxes:
            if other in taxes_data[tax.id]["batch"]:
                break
            yield other

    def taxes_after() -> Iterable[Tax]:
        for other in reversed(sorted_taxes):
            if other in taxes_data[tax.id]["batch"]:
                break
            yield other

    def add_extra_base(other: Tax, sign: int) -> None:
        tax_amount = taxes_data[tax.id]["tax_amount"]
        if "tax_amount" not in taxes_data[other.id]:
            taxes_data[other.id]["extra_base_for_tax"] += sign * tax_amount
        taxes_data[other.id]["extra_base_for_base"] += sign * tax_amount

    if tax.price_include:
        if special_mode in (False, "total_included"):
            for other in taxes_after():
                if not tax.include_base_amount or not other.is_base_affected:
                    add_extra_base(other, -1)
            for other in taxes_before():
                add_extra_base(other, -1)
        elif tax.include_base_amount:  # total_excluded
            for other in taxes_after():
                if other.is_base_affected:
                    add_extra_base(other, 1)
    elif special_mode in (False, "total_excluded"):
        if tax.include_base_amount:
            for other in taxes_after():
                if other.is_base_affected:
                    add_extra_base(other, 1)
    else:  # total_included
        if not tax.include_base_amount:
            for other in taxes_after():
                add_extra_base(other, -1)
        for other in taxes_before():
            add_extra_base(other, -1)


def _eval_tax_amount_fixed_amount(tax: Tax, batch: list[Tax], raw_base: float, context: dict[str, Any]) -> float | None:
    if tax.amount_type == "fixed":
        return context["quantity"] * tax.amount
    return None


def _eval_tax_amount_price_included(tax: Tax, batch: list[Tax], raw_base: float, context: dict[str, Any]) -> float | None:
    if tax.amount_type == "percent":
        total_percentage = sum(other.amount for other in batch) / 100.0
        to_price_excluded_factor = 1 / (1 + total_percentage) if total_percentage != -1 else 0.0
        return raw_base * to_price_excluded_factor * tax.amount / 100.0
    if tax.amount_type == "division":
        return raw_base * tax.amount / 100.0
    return None


def _eval_tax_amount_price_excluded(tax: Tax, batch: list[Tax], raw_base: float, context: dict[str, Any]) -> float | None:
    if tax.amount_type == "percent":
        return raw_base * tax.amount / 100.0
    if tax.amount_type == "division":
        total_percentage = sum(other.amount for other in batch) / 100.0
        incl_base_multiplicator = 1.0 if total_percentage == 1.0 else 1 - total_percentage
        return raw_base * tax.amount / 100.0 / incl_base_multiplicator
    return None


def get_tax_details(taxes: Sequence[Tax], *, price_unit: float, quantity: float, precision_rounding: float = 0.01,
                    rounding_method: str = "round_per_line", special_mode: str | bool = False) -> dict[str, Any]:
    """`_get_tax_details`: base and amount of every (flattened) tax of one line.

    round_per_line rounds the line's base (quantity x price) and each tax amount as soon as it is computed;
    round_globally keeps them raw for `round_base_lines_tax_details` to round per tax over the document.
    """
    batching = batch_for_taxes_computation(taxes, special_mode=special_mode)
    sorted_taxes: list[Tax] = batching["sorted_taxes"]
    taxes_data: dict[int, dict[str, Any]] = {}
    for tax in sorted_taxes:
        price_include = (True if special_mode == "total_included" else False if special_mode == "total_excluded"
                         else tax.price_include)
        taxes_data[tax.id] = {"tax": tax, "price_include": price_include, "extra_base_for_tax": 0.0,
                              "extra_base_for_base": 0.0, "group": batching["group_per_tax"].get(tax.id),
                              "batch": batching["batch_per_tax"][tax.id]}

    raw_base = quantity * price_unit
    if rounding_method == "round_per_line":
        raw_base = float_round(raw_base, precision_rounding)
    context = {"price_unit": price_unit, "quantity": quantity, "raw_base": raw_base, "special_mode": special_mode}

    def eval_tax_amount(function: Callable[..., float | None], tax: Tax) -> None:
        data = taxes_data[tax.id]
        if "tax_amount" in data:
            return
        tax_amount = function(tax, data["batch"], raw_base + data["extra_base_for_tax"], context)
        if tax_amount is None:
            return
        data["tax_amount"] = (float_round(tax_amount, precision_rounding) if rounding_method == "round_per_line"
                              else tax_amount)
        _propagate_extra_taxes_base(sorted_taxes, tax, taxes_data, special_mode=special_mode)

    # Fixed taxes first (they may change the base of an included batch), then included taxes from the
    # last batch back, then excluded taxes in order.
    for tax in reversed(sorted_taxes):
        eval_tax_amount(_eval_tax_amount_fixed_amount, tax)
    for tax in reversed(sorted_taxes):
        if taxes_data[tax.id]["price_include"]:
            eval_tax_amount(_eval_tax_amount_price_included, tax)
    for tax in sorted_taxes:
        if not taxes_data[tax.id]["price_include"]:
            eval_tax_amount(_eval_tax_amount_price_excluded, tax)

    subsequent_taxes: list[Tax] = []
    for tax in reversed(sorted_taxes):
        data = taxes_data[tax.id]
        if "tax_amount" not in data:
            continue
        total_tax_amount = sum(taxes_data[other.id]["tax_amount"] for other in data["batch"])
        base = raw_base + data["extra_base_for_base"]
        if data["price_include"] and special_mode in (False, "total_included"):
            base -= total_tax_amount
        data["base"] = base
        data["taxes"] = list(subsequent_taxes) if tax.include_base_amount else []
        if tax.is_base_affected:
            _union(subsequent_taxes, [tax])

    computed = [data for data in taxes_data.values() if "tax_amount" in data]
    if computed:
        total_excluded = computed[0]["base"]
        total_included = total_excluded + sum(data["tax_amount"] for data in computed)
    else:
        total_included = total_excluded = raw_base
    return {
        "total_excluded": total_excluded,
        "total_included": total_included,
        "taxes_data": [{"tax": data["tax"], "taxes": data["taxes"], "group": data["group"], "batch": data["batch"],
                        "tax_amount": data["tax_amount"], "base_amount": data["base"], "is_reverse_charge": False}
                       for data in computed],
    }


# ---------------------------------------------------------------------------------------------
# Base lines


def import_base_line_extra_tax_data(base_line: dict[str, Any], extra_tax_data: dict[str, Any] | None) -> dict[str, Any]:
    """`_import_base_line_extra_tax_data`: a line's stored manual tax amounts apply only while its currency,
    price, discount and quantity are those they were stored with (compared at the currency's precision) and
    every tax of the line (groups as themselves, not their children) has an entry."""
    results: dict[str, Any] = {}
    if extra_tax_data and extra_tax_data.get("computation_key"):
        results["computation_key"] = extra_tax_data["computation_key"]
    currency: Currency = base_line["currency_id"]
    if (
        extra_tax_data
        and extra_tax_data.get("manual_tax_amounts")
        and currency.id == extra_tax_data.get("currency_id")
        and currency.compare_amounts(base_line["price_unit"], extra_tax_data["price_unit"]) == 0
        and currency.compare_amounts(base_line["discount"], extra_tax_data["discount"]) == 0
        and currency.compare_amounts(base_line["quantity"], extra_tax_data["quantity"]) == 0
        and all(str(tax.id) in extra_tax_data["manual_tax_amounts"] for tax in base_line["tax_ids"])
    ):
        results["price_unit"] = extra_tax_data["price_unit"]
        if base_line["rate"] and extra_tax_data.get("rate"):
            delta_rate = base_line["rate"] / extra_tax_data["rate"]
        else:
            delta_rate = 1.0
        results["manual_tax_amounts"] = {}
        for tax_id_str, amounts in extra_tax_data["manual_tax_amounts"].items():
            amounts = results["manual_tax_amounts"][tax_id_str] = dict(amounts)
            for key in ("tax_amount", "base_amount"):
                if key in amounts:
                    amounts[key] /= delta_rate
    return results


def prepare_base_line(*, taxes: Sequence[Tax], price_unit: float, quantity: float, discount: float,
                      currency: Currency, sign: float, is_refund: bool, extra_tax_data: dict[str, Any] | None = None,
                      record: Any = None, account_id: int | None = None, partner_id: int | None = None,
                      analytic_distribution: Any = None) -> dict[str, Any]:
    """`_prepare_base_line_for_taxes_computation` for an invoice's product line (rate 1, no special mode)."""
    base_line: dict[str, Any] = {
        "record": record, "tax_ids": list(dict.fromkeys(taxes)), "price_unit": float(price_unit),
        "quantity": float(quantity), "discount": float(discount), "currency_id": currency, "special_mode": False,
        "special_type": False, "rate": 1.0, "sign": sign, "is_refund": is_refund, "partner_id": partner_id,
        "account_id": account_id, "analytic_distribution": analytic_distribution,
    }
    extra = import_base_line_extra_tax_data(base_line, extra_tax_data or {})
    base_line["computation_key"] = extra.get("computation_key")
    base_line["manual_tax_amounts"] = extra.get("manual_tax_amounts")
    if "price_unit" in extra:
        base_line["price_unit"] = extra["price_unit"]
    return base_line


def add_tax_details_in_base_line(base_line: dict[str, Any], rounding_method: str) -> None:
    """`_add_tax_details_in_base_line`: tax details of one line, rounded per line or left raw."""
    price_unit_after_discount = base_line["price_unit"] * (1 - (base_line["discount"] / 100.0))
    computation = get_tax_details(base_line["tax_ids"], price_unit=price_unit_after_discount,
                                  quantity=base_line["quantity"],
                                  precision_rounding=base_line["currency_id"].rounding,
                                  rounding_method=rounding_method, special_mode=base_line["special_mode"])
    base_line["tax_details"] = {
        "raw_total_excluded_currency": computation["total_excluded"],
        "raw_total_included_currency": computation["total_included"],
        "taxes_data": [{**data, "raw_tax_amount_currency": data["tax_amount"],
                        "raw_base_amount_currency": data["base_amount"]} for data in computation["taxes_data"]],
    }


def distribute_delta_amount_smoothly(precision_digits: int, delta_amount: float,
                                     target_factors: list[dict[str, Any]]) -> list[float]:
    """`_distribute_delta_amount_smoothly`: spread a rounding delta, one unit at a time, over the targets in
    order, each taking up to ceil(factor x units)."""
    precision_rounding = float(f"1e-{precision_digits}")
    amounts = [0.0] * len(target_factors)
    if float_is_zero(delta_amount, precision_rounding):
        return amounts
    sign = -1 if delta_amount < 0.0 else 1
    nb_of_errors = builtins.round(abs(delta_amount / precision_rounding))
    remaining = nb_of_errors
    for i, target in enumerate(target_factors):
        if not remaining:
            break
        units = min(math.ceil(abs(target["factor"] * nb_of_errors)), remaining)
        remaining -= units
        amounts[i] += sign * units * precision_rounding
    return amounts


def round_base_lines_tax_details(base_lines: list[dict[str, Any]]) -> None:
    """`_round_base_lines_tax_details` (document-currency track, no existing tax lines).

    Rounds each line's base and taxes, applies manual tax amounts, then, per tax (and per document for the
    untaxed base), rounds the sum of the raw amounts once and spreads the difference from the sum of the
    rounded amounts over the lines, largest first. Under round_per_line the raw amounts are already rounded,
    so there is nothing to spread.
    """
    def totals() -> dict[str, Any]:
        return {"base_amount_currency": 0.0, "raw_base_amount_currency": 0.0, "tax_amount_currency": 0.0,
                "raw_tax_amount_currency": 0.0, "raw_total_amount_currency": 0.0, "base_lines": []}

    total_per_tax: dict[tuple, dict[str, Any]] = defaultdict(totals)
    total_per_base: dict[tuple, dict[str, Any]] = defaultdict(totals)

    for base_line in base_lines:
        currency: Currency = base_line["currency_id"]
        computation_key = base_line["computation_key"]
        manual_tax_amounts = base_line["manual_tax_amounts"]
        tax_details = base_line["tax_details"]
        taxes_data = tax_details["taxes_data"]
        tax_details["delta_total_excluded_currency"] = 0.0

        for index, tax_data in enumerate(taxes_data):
            tax = tax_data["tax"]
            tax_data["base_amount_currency"] = currency.round(tax_data["raw_base_amount_currency"])
            manual = manual_tax_amounts and manual_tax_amounts.get(str(tax.id)) or {}
            if "base_amount_currency" in manual:
                raw_base_amount_currency = manual["base_amount_currency"]
                tax_data["base_amount_currency"] = currency.round(raw_base_amount_currency)
            else:
                raw_base_amount_currency = tax_data["raw_base_amount_currency"]
            if index == 0:
                tax_details["total_excluded_currency"] = tax_details["total_included_currency"] = \
                    tax_data["base_amount_currency"]
            if "tax_amount_currency" in manual:
                raw_tax_amount_currency = currency.round(manual["tax_amount_currency"])
            else:
                raw_tax_amount_currency = tax_data["raw_tax_amount_currency"]
            tax_data["tax_amount_currency"] = currency.round(raw_tax_amount_currency)
            tax_details["total_included_currency"] += tax_data["tax_amount_currency"]

            tax_amounts = total_per_tax[(tax.id, currency.id, base_line["is_refund"], tax_data["is_reverse_charge"],
                                         computation_key)]
            tax_amounts["tax"] = tax
            tax_amounts["currency"] = currency
            tax_amounts["tax_amount_currency"] += tax_data["tax_amount_currency"]
            tax_amounts["raw_tax_amount_currency"] += raw_tax_amount_currency
            tax_amounts["base_amount_currency"] += tax_data["base_amount_currency"]
            tax_amounts["raw_base_amount_currency"] += raw_base_amount_currency
            tax_amounts["raw_total_amount_currency"] += raw_base_amount_currency + raw_tax_amount_currency
            if not base_line["special_type"]:
                tax_amounts["base_lines"].append(base_line)

            base_amounts = total_per_base[(currency.id, base_line["is_refund"], computation_key)]
            base_amounts["currency"] = currency
            base_amounts["tax_amount_currency"] += tax_data["tax_amount_currency"]
            base_amounts["raw_total_amount_currency"] += raw_tax_amount_currency
            if index == 0:
                base_amounts["base_amount_currency"] += tax_data["base_amount_currency"]
                base_amounts["raw_base_amount_currency"] += raw_base_amount_currency
                base_amounts["raw_total_amount_currency"] += raw_base_amount_currency
                if not base_line["special_type"]:
                    base_amounts["base_lines"].append(base_line)

        if not taxes_data:
            tax_details["total_excluded_currency"] = tax_details["total_included_currency"] = \
                currency.round(tax_details["raw_total_excluded_currency"])
            tax_amounts = total_per_tax[(None, currency.id, base_line["is_refund"], False, computation_key)]
            tax_amounts["tax"] = None
            tax_amounts["currency"] = currency
            tax_amounts["base_amount_currency"] += tax_details["total_excluded_currency"]
            tax_amounts["raw_base_amount_currency"] += tax_details["raw_total_excluded_currency"]
            tax_amounts["raw_total_amount_currency"] += tax_details["raw_total_excluded_currency"]
            if not base_line["special_type"]:
                tax_amounts["base_lines"].append(base_line)
            base_amounts = total_per_base[(currency.id, base_line["is_refund"], computation_key)]
            base_amounts["currency"] = currency
            base_amounts["base_amount_currency"] += tax_details["total_excluded_currency"]
            base_amounts["raw_base_amount_currency"] += tax_details["raw_total_excluded_currency"]
            base_amounts["raw_total_amount_currency"] += tax_details["raw_total_excluded_currency"]
            if not base_line["special_type"]:
                base_amounts["base_lines"].append(base_line)

    # Round the raw sums once.
    for amounts in list(total_per_tax.values()) + list(total_per_base.values()):
        currency = amounts["currency"]
        for key in ("raw_tax_amount_currency", "raw_base_amount_currency", "raw_total_amount_currency"):
            amounts[key] = currency.round(amounts[key])

    # Spread each tax's amount delta over its lines, the largest (tax included) first.
    for (tax_id, _currency_id, _is_refund, is_reverse_charge, _key), tax_amounts in total_per_tax.items():
        if not tax_amounts["base_lines"]:
            continue
        tax_amounts["sorted_base_line_x_tax_data"] = [
            (base_line, next(((index, tax_data) for index, tax_data in enumerate(base_line["tax_details"]["taxes_data"])
                              if tax_data["tax"].id == tax_id and tax_data["is_reverse_charge"] == is_reverse_charge),
                             None))
            for base_line in sorted(tax_amounts["base_lines"], key=lambda line: (
                bool(line["special_type"]), -line["tax_details"]["total_included_currency"]))
        ]
        tax_amounts["total_included_currency"] = sum(abs(line["tax_details"]["total_included_currency"])
                                                     for line in tax_amounts["base_lines"])
        if tax_id is None or not tax_amounts["total_included_currency"]:
            continue
        currency = tax_amounts["currency"]
        delta_amount = tax_amounts["raw_tax_amount_currency"] - tax_amounts["tax_amount_currency"]
        targets = [{"factor": abs(line["tax_details"]["total_included_currency"] / tax_amounts["total_included_currency"]),
                    "base_line": line, "index_tax_data": index_tax_data}
                   for line, index_tax_data in tax_amounts["sorted_base_line_x_tax_data"] if index_tax_data]
        for target, amount in zip(targets, distribute_delta_amount_smoothly(currency.decimal_places, delta_amount,
                                                                            targets)):
            index, tax_data = target["index_tax_data"]
            tax_data["tax_amount_currency"] += amount
            tax_amounts["tax_amount_currency"] += amount
            if index == 0:
                base_line = target["base_line"]
                total_per_base[(currency.id, base_line["is_refund"], base_line["computation_key"])][
                    "tax_amount_currency"] += amount

    # Spread each tax's base delta the same way (untaxed lines take it as a delta on their total excluded).
    for tax_amounts in total_per_tax.values():
        if not tax_amounts.get("sorted_base_line_x_tax_data") or not tax_amounts.get("total_included_currency"):
            continue
        currency = tax_amounts["currency"]
        delta_amount = tax_amounts["raw_base_amount_currency"] - tax_amounts["base_amount_currency"]
        targets = [{"factor": abs(line["tax_details"]["total_included_currency"] / tax_amounts["total_included_currency"]),
                    "base_line": line, "index_tax_data": index_tax_data}
                   for line, index_tax_data in tax_amounts["sorted_base_line_x_tax_data"]]
        for target, amount in zip(targets, distribute_delta_amount_smoothly(currency.decimal_places, delta_amount,
                                                                            targets)):
            base_line = target["base_line"]
            if target["index_tax_data"]:
                target["index_tax_data"][1]["base_amount_currency"] += amount
            else:
                base_line["tax_details"]["delta_total_excluded_currency"] += amount
                total_per_base[(currency.id, base_line["is_refund"], base_line["computation_key"])][
                    "base_amount_currency"] += amount

    # The document's untaxed total: its raw sum rounded once, the delta spread evenly from the largest line.
    for base_amounts in total_per_base.values():
        if not base_amounts["base_lines"]:
            continue
        currency = base_amounts["currency"]
        delta = base_amounts["raw_base_amount_currency"] - base_amounts["base_amount_currency"]
        if currency.is_zero(delta):
            continue
        lines = base_amounts["base_lines"]
        factors = [{"factor": 1.0 / len(lines)}] * len(lines)
        by_size = sorted(lines, key=lambda line: line["tax_details"]["total_included_currency"], reverse=True)
        for base_line, amount in zip(by_size, distribute_delta_amount_smoothly(currency.decimal_places, delta,
                                                                               factors)):
            base_line["tax_details"]["delta_total_excluded_currency"] += amount


# ---------------------------------------------------------------------------------------------
# Journal items of an invoice


@dataclass
class TaxLine:
    """One `display_type='tax'` journal item: the taxes of the document grouped by tax (and parent group)."""

    tax: Tax
    group: Tax | None
    account_id: int | None
    amount_currency: float  # signed like a balance: a credit (negative) on a customer invoice
    tax_base_amount: float
    analytic_distribution: Any = None


@dataclass
class InvoiceAmounts:
    """What Odoo writes on an invoice's journal items and computes on the move, rounded as Monetary fields."""

    base_amounts: list[float] = field(default_factory=list)  # signed amount_currency of each product line
    price_subtotals: list[float] = field(default_factory=list)
    price_totals: list[float] = field(default_factory=list)
    tax_lines: list[TaxLine] = field(default_factory=list)
    amount_untaxed: float = 0.0
    amount_tax: float = 0.0
    amount_total: float = 0.0


def _tax_rep_amount(tax_data: dict[str, Any], currency: Currency) -> float:
    """`_add_accounting_data_to_base_line_tax_details` for a tax with one 100 % tax repartition line."""
    factor = 1.0
    amount = currency.round(tax_data["tax_amount_currency"] * factor * 1.0)
    delta = tax_data["tax_amount_currency"] - amount
    target = [{"factor": abs(amount / tax_data["tax_amount_currency"]) if tax_data["tax_amount_currency"] else 0.0}]
    return amount + distribute_delta_amount_smoothly(currency.decimal_places, delta, target)[0]


def invoice_amounts(base_lines: list[dict[str, Any]], *, rounding_method: str, currency: Currency,
                    direction_sign: float) -> InvoiceAmounts:
    """Run the engine over an invoice's product lines as `account.move._sync_tax_lines` does, and total the
    move as `_compute_amount` does (amount_untaxed = direction sign x sum of product items, and so on)."""
    if rounding_method not in ROUNDING_METHODS:
        raise ValueError(f"tax_calculation_rounding_method must be one of {', '.join(ROUNDING_METHODS)}, "
                         f"not {rounding_method!r}")
    result = InvoiceAmounts()
    for base_line in base_lines:  # account.move.line._compute_totals: each line rounded on its own
        alone = {**base_line}
        add_tax_details_in_base_line(alone, rounding_method)
        round_base_lines_tax_details([alone])
        result.price_subtotals.append(currency.round(alone["tax_details"]["total_excluded_currency"]))
        result.price_totals.append(currency.round(alone["tax_details"]["total_included_currency"]))

    for base_line in base_lines:
        add_tax_details_in_base_line(base_line, rounding_method)
    round_base_lines_tax_details(base_lines)

    grouped: dict[tuple, TaxLine] = {}
    for base_line in base_lines:  # _prepare_tax_lines
        sign = base_line["sign"]
        tax_details = base_line["tax_details"]
        result.base_amounts.append(currency.round(
            sign * (tax_details["total_excluded_currency"] + tax_details["delta_total_excluded_currency"])))
        for tax_data in tax_details["taxes_data"]:
            tax: Tax = tax_data["tax"]
            group: Tax | None = tax_data["group"]
            analytic = base_line["analytic_distribution"] if tax.analytic else None
            account_id = tax.account_id or base_line["account_id"]
            key = (tax.id, base_line["is_refund"], group.id if group else None, account_id, repr(analytic),
                   tuple(t.id for t in tax_data["taxes"]))
            line = grouped.setdefault(key, TaxLine(tax=tax, group=group, account_id=account_id, amount_currency=0.0,
                                                   tax_base_amount=0.0, analytic_distribution=analytic))
            line.tax_base_amount += sign * tax_data["base_amount_currency"]
            line.amount_currency += sign * _tax_rep_amount(tax_data, currency)
    for line in grouped.values():
        if not currency.is_zero(line.amount_currency):  # zero tax lines are dropped
            line.amount_currency = currency.round(line.amount_currency)
            line.tax_base_amount = currency.round(line.tax_base_amount)
            result.tax_lines.append(line)

    untaxed = sum(result.base_amounts)
    tax_total = sum(line.amount_currency for line in result.tax_lines)
    result.amount_untaxed = currency.round(direction_sign * untaxed)
    result.amount_tax = currency.round(direction_sign * tax_total)
    result.amount_total = currency.round(direction_sign * (untaxed + tax_total))
    return result
