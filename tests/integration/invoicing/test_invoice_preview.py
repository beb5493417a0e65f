"""Staff's preview of a customer's next invoice (apps/invoicing/close/preview.py) is what the close then bills."""
from __future__ import annotations

import pytest
import time_machine

from apps.invoicing.close import periods_close
from apps.invoicing.close.preview import invoice_preview
from apps.invoicing.models import Invoice
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn

from .conftest import at

pytestmark = pytest.mark.django_db


def test_the_preview_is_the_invoice_the_close_writes_when_no_more_usage_comes(billing, settings):
    """An in-arrears $29 plan started mid-month (prorated) with a $0.37/GB charge and 17 GB, in British Columbia
    (GST 5 % + PST 7 % per line), and an in-advance $10 plan whose next period is billed the same day."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 0
    metric = billing.metric()
    metered = billing.plan("metered", amount_cents=2900, charges=[(metric, "standard", {"amount": "0.37"}, {})])
    advance = billing.plan("advance", amount_cents=1000, pay_in_advance=True)
    link = billing.customer(province="BC", tz="America/Vancouver")
    billing.subscribe("s1", metered, when=at(2026, 3, 11, 0, 0))
    billing.subscribe("s2", advance, when=at(2026, 3, 1, 0, 0))
    usage_events_ingest(service=billing.service, now=at(2026, 3, 20, 12), events=[
        EventIn(transaction_id=f"t{i}", external_subscription_id="s1", code="gb", timestamp=int(at(2026, 3, 15).timestamp()),
                properties={"gb": gb}) for i, gb in enumerate(("10", "7"))])
    periods_close(as_of=at(2026, 3, 1, 12, 0))  # s2's first period, billed in advance: not part of the preview
    before = set(Invoice.objects.values_list("pk", flat=True))

    with time_machine.travel(at(2026, 3, 20, 12), tick=False):
        (preview,) = invoice_preview(customer_id=link.customer_id)
    assert (preview.billing_on.isoformat(), preview.currency) == ("2026-04-01", "CAD")
    # $29 × 22/31 days (from March 10, 21:00 in Vancouver), 17 GB × $0.37, April's $10 in advance; GST and PST
    # per line and rate, half-up: 103 + 144, 31 + 44, 50 + 70.
    assert [(line.name, line.amount_cents) for line in preview.lines] == [
        ("NexaCloud · Metered", 2058), ("NexaCloud · GB", 629), ("NexaCloud · Advance", 1000)]
    assert (preview.fees_amount_cents, preview.taxes_amount_cents, preview.total_amount_cents) == (3687, 442, 4129)

    periods_close(as_of=at(2026, 4, 1, 12, 0))  # 09:00 in Vancouver: March has ended there
    (invoice,) = Invoice.objects.exclude(pk__in=before)
    assert invoice.issuing_date == preview.billing_on
    assert sorted(invoice.fees.values_list("amount_cents", flat=True)) == sorted(line.amount_cents for line in preview.lines)
    assert (invoice.fees_amount_cents, invoice.taxes_amount_cents, invoice.total_amount_cents) == (
        preview.fees_amount_cents, preview.taxes_amount_cents, preview.total_amount_cents)


def test_no_running_subscription_no_preview(billing):
    link = billing.customer()
    assert invoice_preview(customer_id=link.customer_id) == []
