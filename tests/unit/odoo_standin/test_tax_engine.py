"""The Odoo stand-in computes invoice taxes as Odoo 19 does: floats, float_round, per line or globally (no DB)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.odoo_standin import tax_engine
from tests.odoo_standin.store import Store
from tests.odoo_standin.tax_engine import Currency, Tax, float_round

CAD = Currency(id=1)
HST_13 = Tax(id=13, name="13% HST", amount=13.0, sequence=20)
GST_5 = Tax(id=5, name="5% GST", amount=5.0, sequence=10)
QST = Tax(id=9, name="9.975% QST", amount=9.975, sequence=11)
GST_QST = Tax(id=14, name="14.975% GST+QST", amount=0.0, amount_type="group", sequence=30, children=(GST_5, QST))


@pytest.mark.parametrize(("value", "expected"), [
    (2.675, 2.68),  # stored as 2.67499999999999982236431605997495353221893310546875
    (1.005, 1.01),
    (-2.675, -2.68),  # half away from zero
    (0.125, 0.13),  # a true binary tie: Python's round() would give 0.12
    (9.975, 9.98),  # round(9.975, 2) == 9.97
    (0.004999, 0.0),
    (0.0, 0.0),
    (1234567.895, 1234567.9),
])
def test_float_round_is_half_up_despite_binary_floats(value: float, expected: float) -> None:
    assert float_round(value, 0.01) == expected


def _lines(rows: list[tuple[float, float, list[Tax]]], *, sign: float = -1, extra: list[dict] | None = None) -> list[dict]:
    return [tax_engine.prepare_base_line(taxes=taxes, price_unit=price, quantity=qty, discount=0.0, currency=CAD,
                                         sign=sign, is_refund=sign > 0, extra_tax_data=(extra or [None] * len(rows))[i])
            for i, (qty, price, taxes) in enumerate(rows)]


def _totals(rows: list[tuple[float, float, list[Tax]]], method: str, **kwargs) -> tuple[float, float, float]:
    amounts = tax_engine.invoice_amounts(_lines(rows, **kwargs), rounding_method=method, currency=CAD,
                                         direction_sign=kwargs.get("sign", -1))
    return amounts.amount_untaxed, amounts.amount_tax, amounts.amount_total


EXAMPLE_A = [(12345.0, 0.0035, [HST_13]), (1.0, 49.99, [HST_13]), (7.0, 1.10, [HST_13])]
EXAMPLE_B = [(1.0, 0.10, [HST_13])] * 5 + [(1.0, 49.99, [HST_13])]


@pytest.mark.parametrize("method", tax_engine.ROUNDING_METHODS)
def test_worked_example_a_is_the_same_either_way(method: str) -> None:
    assert _totals(EXAMPLE_A, method) == (100.9, 13.12, 114.02)  # research/odoo.md §5.5


def test_worked_example_b_per_line_rounds_each_addon_down() -> None:
    assert _totals(EXAMPLE_B, "round_per_line") == (50.49, 6.55, 57.04)


def test_worked_example_b_globally_rounds_the_sum_and_puts_the_cent_on_the_largest_line() -> None:
    lines = _lines(EXAMPLE_B)
    amounts = tax_engine.invoice_amounts(lines, rounding_method="round_globally", currency=CAD, direction_sign=-1)
    assert (amounts.amount_untaxed, amounts.amount_tax, amounts.amount_total) == (50.49, 6.56, 57.05)
    line_taxes = [line["tax_details"]["taxes_data"][0]["tax_amount_currency"] for line in lines]
    assert [round(tax, 2) for tax in line_taxes] == [0.01] * 5 + [6.51]  # 6.4987 -> 6.50, +0.01 of the delta


def test_group_children_are_rounded_each_on_the_line_like_separate_taxes() -> None:
    # GST 5.005 -> 5.01 and QST 9.984975 -> 9.98: the group's 14.989975 rounded once would be 14.99.
    assert _totals([(1.0, 100.10, [GST_QST])], "round_per_line") == (100.1, 14.99, 115.09)
    assert _totals([(1.0, 100.10, [GST_QST])], "round_per_line") == _totals([(1.0, 100.10, [GST_5, QST])],
                                                                            "round_per_line")
    assert _totals([(1.0, 100.0, [GST_QST])], "round_per_line") == (100.0, 14.98, 114.98)


def test_price_included_tax_is_divided_out_of_the_price() -> None:
    included = Tax(id=13, name="13% HST", amount=13.0, sequence=20, price_include=True)
    assert _totals([(1.0, 10.0, [included])], "round_per_line") == (8.85, 1.15, 10.0)


def test_a_refund_has_positive_amounts_and_debit_lines() -> None:
    amounts = tax_engine.invoice_amounts(_lines(EXAMPLE_A, sign=1), rounding_method="round_per_line", currency=CAD,
                                         direction_sign=1)
    assert (amounts.amount_untaxed, amounts.amount_tax, amounts.amount_total) == (100.9, 13.12, 114.02)
    assert all(amount > 0 for amount in amounts.base_amounts)


def _manual(price: float, amounts: dict[int, float], currency_id: int = 1) -> dict:
    return {"currency_id": currency_id, "price_unit": price, "quantity": 1.0, "discount": 0.0,
            "manual_tax_amounts": {str(tax_id): {"tax_amount_currency": amount} for tax_id, amount in amounts.items()}}


def test_manual_tax_amounts_replace_the_computed_ones_only_while_the_line_is_unchanged() -> None:
    # 0.04 at 13 % is 0.0052 -> 0.01; the stored amount says 0.00.
    assert _totals([(1.0, 0.04, [HST_13])], "round_per_line", extra=[_manual(0.04, {13: 0.0})]) == (0.04, 0.0, 0.04)
    assert _totals([(1.0, 0.05, [HST_13])], "round_per_line", extra=[_manual(0.04, {13: 0.0})]) == (0.05, 0.01, 0.06)
    other_currency = _manual(0.04, {13: 0.0}, currency_id=2)
    assert _totals([(1.0, 0.04, [HST_13])], "round_per_line", extra=[other_currency]) == (0.04, 0.01, 0.05)


def test_manual_amounts_for_a_group_need_the_group_id_and_apply_per_child() -> None:
    children_only = _manual(1.0, {5: 0.06, 9: 0.1})
    assert _totals([(1.0, 1.0, [GST_QST])], "round_per_line", extra=[children_only]) == (1.0, 0.15, 1.15)
    with_group = _manual(1.0, {14: 0.0, 5: 0.06, 9: 0.1})
    assert _totals([(1.0, 1.0, [GST_QST])], "round_per_line", extra=[with_group]) == (1.0, 0.16, 1.16)


def test_zero_tax_lines_are_dropped_and_tax_lines_are_grouped_per_tax_and_parent_group() -> None:
    zero = Tax(id=99, name="0% Int", amount=0.0)
    amounts = tax_engine.invoice_amounts(_lines([(1.0, 10.0, [zero]), (1.0, 10.0, [GST_QST]), (1.0, 20.0, [GST_5])]),
                                         rounding_method="round_per_line", currency=CAD, direction_sign=-1)
    assert [(line.tax.id, line.group.id if line.group else None, line.amount_currency) for line in amounts.tax_lines] \
        == [(5, 14, -0.5), (9, 14, -1.0), (5, None, -1.0)]


def test_unknown_rounding_method_is_refused() -> None:
    with pytest.raises(ValueError, match="round_per_line, round_globally"):
        tax_engine.invoice_amounts(_lines(EXAMPLE_A), rounding_method="round_half_even", currency=CAD,
                                   direction_sign=-1)


def test_the_store_reads_the_company_rounding_method_at_each_change() -> None:
    store = Store(login="bot", password="pw", api_key="key")
    hst = next(r["res_id"] for r in store.records["ir.model.data"].values() if r["name"] == "1_hst_sale_tax_13")
    partner = store.create("res.partner", [{"name": "Acme"}], {})[0]

    def move_amounts() -> tuple[float, float, float]:
        move_id = store.create("account.move", [{"move_type": "out_invoice", "partner_id": partner, "invoice_line_ids": [
            [0, 0, {"name": f"line {qty}", "quantity": qty, "price_unit": price, "tax_ids": [[6, 0, [hst]]]}]
            for qty, price, _ in EXAMPLE_B]}], {})[0]
        move = store.read("account.move", [move_id], ["amount_untaxed", "amount_tax", "amount_total"])[0]
        return move["amount_untaxed"], move["amount_tax"], move["amount_total"]

    assert store.read("res.company", [1], ["tax_calculation_rounding_method"])[0][
        "tax_calculation_rounding_method"] == "round_per_line"
    assert move_amounts() == (50.49, 6.55, 57.04)
    store.write("res.company", [1], {"tax_calculation_rounding_method": "round_globally"})
    assert move_amounts() == (50.49, 6.56, 57.05)


def test_the_standin_does_not_import_the_hub() -> None:
    """Its tax computation must not be the hub's own code; only fixtures.py may build the hub's client."""
    importers = []
    for path in sorted(Path(tax_engine.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name == "apps" or name.startswith("apps.") for name in names):
                importers.append(path.name)
    assert importers == ["fixtures.py"]


def test_the_store_divides_a_price_included_tax_out_of_the_price() -> None:
    store = Store(login="bot", password="pw", api_key="key")
    hst = next(r["res_id"] for r in store.records["ir.model.data"].values() if r["name"] == "1_hst_sale_tax_13")
    store.write("account.tax", [hst], {"price_include_override": "tax_included"})
    partner = store.create("res.partner", [{"name": "Acme"}], {})[0]
    move_id = store.create("account.move", [{"move_type": "out_invoice", "partner_id": partner, "invoice_line_ids": [
        [0, 0, {"name": "Seats", "quantity": 1, "price_unit": 10.0, "tax_ids": [[6, 0, [hst]]]}]]}], {})[0]
    move = store.read("account.move", [move_id], ["amount_untaxed", "amount_tax", "amount_total"])[0]
    assert (move["amount_untaxed"], move["amount_tax"], move["amount_total"]) == (8.85, 1.15, 10.0)
    assert store.read("account.tax", [hst], ["price_include"])[0]["price_include"] is True
