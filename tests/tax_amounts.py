"""Hypothesis strategies for taxed line amounts where rounding decides (shared by the hub-vs-Odoo rounding tests)."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

from apps.core.money import to_minor_units
from apps.catalog.taxes import TaxRate

MAX_LINE_CENTS = 10**9  # ten million dollars per line


def half_cent_amounts(rate: Decimal, *, max_cents: int = MAX_LINE_CENTS) -> st.SearchStrategy[int]:
    """Amounts (cents) whose tax at `rate` is exactly x.5 cents, and their neighbours."""
    period = next(p for p in range(1, 100_001) if (p * rate / 100) % 1 == 0)
    first = next(c for c in range(1, period + 1) if (c * rate / 100) % 1 == Decimal("0.5"))
    return st.builds(lambda k, offset: first + k * period + offset,
                     st.integers(0, (max_cents - first) // period - 1), st.sampled_from((0, 0, 0, -1, 1)))


def rated_amounts() -> st.SearchStrategy[int]:
    """A usage fee as the hub rates it: units (large, fractional) x unit price (down to a millionth of a dollar),
    rounded once to the cent, half-up."""
    units = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("50000000"), places=6)
    price = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("20"), places=6)
    return st.builds(lambda u, p: to_minor_units(u * p, "CAD"), units, price)


def line_amounts(rates: list[TaxRate], *, max_cents: int = MAX_LINE_CENTS) -> st.SearchStrategy[int]:
    """Positive line amounts in cents: tiny, any size, rated usage, and half-cent tax boundaries of `rates`."""
    return st.one_of(st.integers(1, 300), st.integers(1, max_cents), rated_amounts(),
                     *(half_cent_amounts(rate.rate, max_cents=max_cents) for rate in rates)
                     ).filter(lambda cents: 0 < cents <= max_cents)
