"""The close over real usage rows written through apps.usage: charges, late usage adjustments, refresh."""
from __future__ import annotations

from decimal import Decimal

import pytest

from apps.invoicing.close import periods_close
from apps.invoicing.models import Fee, Invoice
from apps.invoicing.close import invoice_refresh, invoices_finalize_due
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn

from .conftest import at

pytestmark = pytest.mark.django_db


def ingest(billing, tid, when, gb, *, now):
    return usage_events_ingest(
        service=billing.service,
        events=[EventIn(transaction_id=tid, external_subscription_id="s1", code="gb",
                        timestamp=int(when.timestamp()), properties={"gb": gb})],
        now=now,
    )


def test_late_usage_is_billed_once_as_an_adjustment_on_the_next_invoice(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    plan = billing.plan(amount_cents=1000, charges=[(metric, "standard", {"amount": "0.5"}, {})])
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    ingest(billing, "t1", at(2026, 3, 10), "10", now=at(2026, 3, 10, 11))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    march = Invoice.objects.get()
    assert march.fees.get(fee_type="charge").amount_cents == 500

    result = ingest(billing, "t2", at(2026, 3, 20), "4", now=at(2026, 4, 2, 9))
    assert result.items[0].is_late
    periods_close(as_of=at(2026, 5, 1, 1, 0))
    april = Invoice.objects.exclude(pk=march.pk).get()
    adjustment = april.fees.get(is_adjustment=True)
    assert adjustment.amount_cents == 200 and adjustment.units == 4
    assert april.fees_amount_cents == 1000 + 0 + 200
    assert march.fees.count() == 2  # the finalized invoice never changes
    assert periods_close(as_of=at(2026, 5, 1, 1, 0)).invoices_count == 0
    assert Fee.objects.filter(is_adjustment=True).count() == 1


def test_draft_refresh_picks_up_usage_and_finalize_due_numbers_it(billing, settings):
    settings.INVOICE_GRACE_PERIOD_DAYS = 2
    metric = billing.metric()
    plan = billing.plan(amount_cents=1000, charges=[(metric, "standard", {"amount": "1"}, {})])
    billing.customer()
    sub = billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    ingest(billing, "t1", at(2026, 3, 10), "3", now=at(2026, 3, 10, 11))
    periods_close(as_of=at(2026, 4, 1, 1, 0))
    draft = Invoice.objects.get()
    assert draft.status == "draft" and draft.fees_amount_cents == 1300
    # Usage dated in March arriving during the grace period is late (cut-off set at close) and is
    # folded into the draft on refresh as an adjustment line.
    ingest(billing, "t2", at(2026, 3, 30), "2", now=at(2026, 4, 1, 12))
    refreshed = invoice_refresh(invoice_id=draft.pk, now=at(2026, 4, 1, 13))
    assert refreshed.fees_amount_cents == 1500 and refreshed.number == ""
    assert invoices_finalize_due(now=at(2026, 4, 3, 2, 0)) == 1
    final = Invoice.objects.get()
    assert final.status == "finalized" and final.fees_amount_cents == 1500 and final.number.endswith("000001")
    sub.refresh_from_db()
    assert sub.usage_billed_until == at(2026, 4, 1, 0, 0)


@pytest.mark.parametrize("batch_min", [1, 10_000], ids=["batched", "one_by_one"])
def test_percentage_charges_priced_per_event_are_billed_to_the_cent(billing, settings, batch_min):
    """Free events, per-transaction min/max, and a free total with a fixed fee need each event's value."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    settings.INVOICE_CLOSE_BATCH_MIN = batch_min
    metric = billing.metric(code="amount", field_name="amount")
    plan = billing.plan(amount_cents=1000, charges=[
        (metric, "percentage", {"rate": "2", "fixed_amount": "0.1", "free_units_per_events": 1,
                                "per_transaction_min_amount": "0.5", "per_transaction_max_amount": "15"}, {}),
        (metric, "percentage", {"rate": "1.5", "fixed_amount": "0.25", "free_units_per_total_aggregation": "100"}, {}),
        (metric, "percentage", {"rate": "3", "free_units_per_events": 2}, {}),
    ])
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    # Ingested out of time order: pricing must follow event time (10, 200, 50, 1000, 5).
    for tid, day, amount in [("t4", 20, "1000"), ("t1", 2, "10"), ("t3", 15, "50"), ("t5", 28, "5"), ("t2", 9, "200")]:
        usage_events_ingest(
            service=billing.service,
            events=[EventIn(transaction_id=tid, external_subscription_id="s1", code="amount",
                            timestamp=int(at(2026, 3, day).timestamp()), properties={"amount": amount})],
            now=at(2026, 3, 28, 12),
        )

    run = periods_close(as_of=at(2026, 4, 1, 1, 0))

    assert run.failures_count == 0 and run.invoices_count == 1
    invoice = Invoice.objects.get()
    charges = {fee.charge.code: fee for fee in invoice.fees.filter(fee_type="charge")}
    # c0, per transaction: 10 free (first event); 200 -> 4.00 + 0.10 = 4.10; 50 -> 1.00 + 0.10 = 1.10;
    #     1000 -> 20.10 capped at 15.00; 5 -> 0.20 raised to 0.50. 4.10 + 1.10 + 15.00 + 0.50 = 20.70
    # c1, 1,265 units, the first 100 free (one event, 10, fits under it): 1,165 × 1.5 % = 17.475,
    #     fixed 0.25 × 4 paid events = 1.00; 18.475 rounds half-up to 18.48
    # c2, the first two events (10 + 200) free: 1,055 × 3 % = 31.65
    assert {code: fee.amount_cents for code, fee in charges.items()} == {"c0": 2070, "c1": 1848, "c2": 3165}
    assert charges["c1"].precise_amount == Decimal("18.475") and charges["c1"].events_count == 5
    assert charges["c0"].amount_details["paid_events"] == 4
    # HST 13 % per line, rounded once: 130 + 269.1 -> 269 + 240.24 -> 240 + 411.45 -> 411 = 1,050
    assert (invoice.fees_amount_cents, invoice.taxes_amount_cents, invoice.total_amount_cents) == (
        1000 + 2070 + 1848 + 3165, 1050, 8083 + 1050)
    assert invoice.status == "finalized" and invoice.number.endswith("000001")
    assert periods_close(as_of=at(2026, 4, 1, 1, 0)).invoices_count == 0
