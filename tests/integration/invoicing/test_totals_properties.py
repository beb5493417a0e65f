"""Property tests on the close's money path: exact integer totals, tax per rate = per-line rounding rule."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given, settings, strategies as st

from apps.invoicing import rating
from apps.invoicing.fees import fee_taxes
from apps.catalog.taxes import invoice_totals
from tests.tax_rates import PROVINCE_TAXES

amounts = st.decimals(min_value=Decimal("0"), max_value=Decimal("100000"), places=4, allow_nan=False)
prices = st.decimals(min_value=Decimal("0"), max_value=Decimal("50"), places=6, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.tuples(amounts, prices), min_size=1, max_size=25), province=st.sampled_from(sorted(PROVINCE_TAXES)))
def test_line_totals_sum_to_invoice_total_and_tax_per_rate_follows_per_line_rounding(lines, province):
    rates = PROVINCE_TAXES[province]
    fees = []
    for units, price in lines:
        result = rating.price_charge(
            charge_model="standard", properties={"amount": str(price)}, units=units, events_count=1, currency="CAD"
        )
        assert isinstance(result.amount_cents, int)
        assert result.amount_cents == int((units * price * 100).quantize(Decimal(1), ROUND_HALF_UP))
        fees.append(result.amount_cents)
    totals = invoice_totals([(cents, rates) for cents in fees])
    per_line = [fee_taxes(cents, rates) for cents in fees]
    # Σ (line amount + line tax) == invoice total, in integers.
    assert sum(cents + taxes for cents, (taxes, _, _) in zip(fees, per_line)) == totals.total_amount_cents
    for tax_line in totals.tax_lines:
        rule = sum(
            int((Decimal(cents) * tax_line.rate / 100).quantize(Decimal(1), ROUND_HALF_UP)) for cents in fees
        )
        assert tax_line.tax_amount_cents == rule
        assert tax_line.base_amount_cents == sum(fees)
    for taxes, rate, applied in per_line:
        assert isinstance(taxes, int) and isinstance(rate, Decimal)
        assert all(isinstance(item["amount_cents"], int) and isinstance(item["rate"], str) for item in applied)
