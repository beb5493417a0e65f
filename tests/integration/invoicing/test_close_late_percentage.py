"""Late usage of a percentage charge priced per event: the adjustment is priced from the late rows' values."""
from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from apps.invoicing.close import periods_close
from apps.invoicing.models import Fee, Invoice
from apps.usage import selectors
from apps.usage.models import UsageEvent
from apps.usage.selectors import late_usage_values
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn

from .conftest import at

pytestmark = pytest.mark.django_db


def ingest(billing, events, *, now):
    return usage_events_ingest(
        service=billing.service,
        events=[EventIn(transaction_id=tid, external_subscription_id="s1", code="amount",
                        timestamp=int(at(2026, 3, day).timestamp()), properties={"amount": amount})
                for tid, day, amount in events],
        now=now,
    )


@pytest.mark.parametrize("batch_min", [1, 10_000], ids=["batched", "one_by_one"])
def test_late_usage_of_a_per_event_percentage_charge_is_priced_from_the_late_rows(
    billing, settings, caplog, monkeypatch, batch_min
):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    settings.INVOICE_CLOSE_BATCH_MIN = batch_min
    metric = billing.metric(code="amount", field_name="amount")
    plan = billing.plan(amount_cents=1000, charges=[
        (metric, "percentage", {"rate": "2", "fixed_amount": "0.1", "free_units_per_events": 1,
                                "per_transaction_min_amount": "0.5", "per_transaction_max_amount": "5"}, {}),
        (metric, "percentage", {"rate": "1.5", "fixed_amount": "0.25", "free_units_per_total_aggregation": "100"}, {}),
    ])
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    ingest(billing, [("t1", 2, "10"), ("t2", 9, "200")], now=at(2026, 3, 10, 12))
    assert periods_close(as_of=at(2026, 4, 1, 1, 0)).failures_count == 0
    march = Invoice.objects.get()
    assert march.status == "finalized"
    # c0: 10 free (first event); 200 -> 4.00 + 0.10 = 4.10.
    # c1: 210 units, 100 free: 110 x 1.5 % = 1.65, fixed 0.25 x 1 paid event (10 fits under 100) = 1.90.
    assert {fee.charge.code: fee.amount_cents for fee in march.fees.filter(fee_type="charge")} == {"c0": 410, "c1": 190}

    # Late rows for March, ingested out of time order: priced in event time order 2, 300, 40.5.
    result = ingest(billing, [("l1", 20, "300"), ("l2", 5, "2"), ("l3", 25, "40.5")], now=at(2026, 4, 2, 9))
    assert all(item.is_late for item in result.items)
    caplog.set_level(logging.INFO, logger="apps.invoicing.close")
    reads = []
    monkeypatch.setattr(selectors, "late_usage_values", lambda **kw: reads.append(kw) or late_usage_values(**kw))
    run = periods_close(as_of=at(2026, 5, 1, 1, 0))

    assert run.failures_count == 0 and run.invoices_count == 1
    assert not [record for record in caplog.records if "planned one by one" in record.getMessage()]
    assert [sorted(read["event_ids"]) for read in reads] == [sorted(UsageEvent.objects.filter(is_late=True).values_list("id", flat=True))]  # one read
    april = Invoice.objects.exclude(pk=march.pk).get()
    adjustments = {fee.charge.code: fee for fee in april.fees.filter(is_adjustment=True)}
    # c0 on the late rows alone: 2 free (first event); 300 -> 6.00 + 0.10 = 6.10 capped at 5.00;
    #     40.5 -> 0.81 + 0.10 = 0.91. 5.00 + 0.91 = 5.91
    # c1: 342.5 units, 100 free: 242.5 x 1.5 % = 3.6375, fixed 0.25 x 2 paid events (2 fits under 100) = 0.50;
    #     4.1375 rounds half-up to 4.14
    assert {code: fee.amount_cents for code, fee in adjustments.items()} == {"c0": 591, "c1": 414}
    assert adjustments["c1"].precise_amount == Decimal("4.1375") and adjustments["c1"].events_count == 3
    assert adjustments["c0"].amount_details["paid_events"] == 2
    # HST 13 % per line, rounded once: 130 + 76.83 -> 77 + 53.82 -> 54 = 261 (April's own usage is zero).
    assert (april.fees_amount_cents, april.taxes_amount_cents, april.total_amount_cents) == (
        1000 + 591 + 414, 261, 2005 + 261)
    assert not UsageEvent.objects.filter(is_late=True, late_billed_at__isnull=True).exists()
    assert march.fees.count() == 3  # the finalized invoice never changes

    assert periods_close(as_of=at(2026, 5, 1, 1, 0)).invoices_count == 0
    assert Fee.objects.filter(is_adjustment=True).count() == 2
