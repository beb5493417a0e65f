"""Money in the hub: Decimal in Python, integer minor units on the wire and in storage.

Pure module: no ORM, no I/O. Every billed amount is rounded once, half-up, to the
currency's minor unit (ISO 4217 exponent).
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CURRENCY_EXPONENT: dict[str, int] = {
    "CAD": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "AUD": 2,
    "CHF": 2,
    "JPY": 0,
}
SUPPORTED_CURRENCIES = tuple(sorted(CURRENCY_EXPONENT))


def _require_decimal(amount: object) -> None:
    if not isinstance(amount, Decimal):
        raise TypeError(f"money must be Decimal, not {type(amount).__name__}")


def currency_exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENT[currency]
    except KeyError:
        raise ValueError(f"unsupported currency {currency!r}") from None


def to_minor_units(amount: Decimal, currency: str) -> int:
    """Round a major-unit amount half-up to the currency's minor unit and return it as an int."""
    _require_decimal(amount)
    return int(amount.scaleb(currency_exponent(currency)).quantize(Decimal(1), ROUND_HALF_UP))


def from_minor_units(cents: int, currency: str) -> Decimal:
    """Return the exact major-unit Decimal for an integer amount of minor units."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError(f"minor units must be int, not {type(cents).__name__}")
    return Decimal(cents).scaleb(-currency_exponent(currency))


def round_half_up(value: Decimal, places: int = 0) -> Decimal:
    """Round a Decimal half-up to `places` decimal places."""
    _require_decimal(value)
    return value.quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)


def minor_units_of(amount_cents: Decimal) -> int:
    """Round a Decimal amount already expressed in minor units (e.g. a precise fee in cents) half-up."""
    _require_decimal(amount_cents)
    return int(amount_cents.quantize(Decimal(1), ROUND_HALF_UP))


# What staff read next to the amount; the ISO code always follows, so "$" is never ambiguous between CAD and USD.
CURRENCY_SYMBOL: dict[str, str] = {"CAD": "$", "USD": "$", "AUD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "CHF": ""}


def money_display(cents: int | None, currency: str) -> str:
    """Return minor units as staff read them: `$119.78 CAD`, `-$5.00 CAD`, `$1,234.50 USD`; `-` for no amount.

    A currency the hub does not know shows its minor units with the code, never a guessed decimal point.
    """
    if cents is None:
        return "-"
    currency = (currency or "").upper()
    if currency not in CURRENCY_EXPONENT:
        return f"{cents} {currency} (minor units)".strip()
    amount = from_minor_units(int(cents), currency)
    sign = "-" if amount < 0 else ""
    places = CURRENCY_EXPONENT[currency]
    return f"{sign}{CURRENCY_SYMBOL.get(currency, '')}{abs(amount):,.{places}f} {currency}"
