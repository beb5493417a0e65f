"""graduated_percentage and dynamic charges through the close and current usage (issue 21), Lago's examples."""
from __future__ import annotations

from decimal import Decimal

import pytest

from apps.invoicing.close import current_usage_lines, periods_close
from apps.invoicing.models import Invoice
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn

from .conftest import at

pytestmark = pytest.mark.django_db

LAGO_TIERS = {"graduated_percentage_ranges": [
    {"from_value": 0, "to_value": 1000, "rate": "1", "flat_amount": "200"},
    {"from_value": 1001, "to_value": 10000, "rate": "2", "flat_amount": "300"},
    {"from_value": 10001, "to_value": None, "rate": "3", "flat_amount": "400"},
]}


def events(billing, rows, *, code, now):
    usage_events_ingest(service=billing.service, now=now, events=[
        EventIn(transaction_id=tid, external_subscription_id="s1", code=code,
                timestamp=int(at(2026, 3, day).timestamp()), properties=props, precise_total_amount_cents=price)
        for tid, day, props, price in rows])


def test_the_close_and_current_usage_bill_both_models(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    volume = billing.metric(code="volume", field_name="amount")
    tokens = billing.metric(code="tokens", field_name="tokens")
    plan = billing.plan(amount_cents=0, currency="USD", charges=[
        (volume, "graduated_percentage", LAGO_TIERS, {}), (tokens, "dynamic", {}, {})])
    billing.customer()
    subscription = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    # Lago's guide: transactions of $500, $550 and $4,000 cost $205, $306 and $80.
    events(billing, [("v1", 2, {"amount": "500"}, None), ("v2", 3, {"amount": "550"}, None),
                     ("v3", 4, {"amount": "4000"}, None)], code="volume", now=at(2026, 3, 10))
    # Each event priced by the app (minor units, fractions allowed): 1,234.5 + 100 = 13.345 dollars.
    events(billing, [("k1", 2, {"tokens": "1000"}, "1234.5"), ("k2", 3, {"tokens": "50"}, "100")],
           code="tokens", now=at(2026, 3, 10))

    _, _, _, lines = current_usage_lines(subscription, at=at(2026, 3, 20))
    assert {line.charge.charge_model: line.amount_cents for line in lines} == {
        "graduated_percentage": 20500 + 30600 + 8000, "dynamic": 1335}

    periods_close(as_of=at(2026, 4, 1, 1, 0))
    fees = {fee.charge.charge_model: fee for fee in Invoice.objects.get().fees.filter(fee_type="charge")}
    assert fees["graduated_percentage"].amount_cents == 59100 and fees["graduated_percentage"].units == 5050
    assert fees["dynamic"].amount_cents == 1335 and fees["dynamic"].precise_amount == Decimal("13.345")
    assert fees["dynamic"].units == 1050
