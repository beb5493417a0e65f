"""The close over real usage rows written through apps.usage: charges, late usage adjustments, refresh."""
from __future__ import annotations

import pytest

from apps.invoicing.close import periods_close
from apps.invoicing.models import Fee, Invoice
from apps.invoicing.services import invoice_refresh, invoices_finalize_due
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
