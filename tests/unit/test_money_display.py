from __future__ import annotations

from apps.core.money import money_display


def test_minor_units_show_as_currency_units_with_the_code():
    assert money_display(11978, "CAD") == "$119.78 CAD"
    assert money_display(123456789, "USD") == "$1,234,567.89 USD"
    assert money_display(-500, "cad") == "-$5.00 CAD"
    assert money_display(0, "EUR") == "€0.00 EUR"
    assert money_display(1500, "JPY") == "¥1,500 JPY"


def test_an_unknown_currency_shows_minor_units_not_a_guessed_decimal_point():
    assert money_display(11978, "XTS") == "11978 XTS (minor units)"
    assert money_display(None, "CAD") == "-"
