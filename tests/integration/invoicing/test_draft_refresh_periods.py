"""A draft refreshed after a later period of its subscription was billed keeps its own periods (issue 15).

One close can open two drafts for one subscription (a close that ran late, or a subscription that began a day
before a month end in its customer's timezone): the earlier period's, and the later one's. Refreshing the earlier
draft at the end of its grace period re-plans the fees it deletes; the planner starts from the last period billed,
so the earlier period must be looked at again, else its fees and the usage they billed are on no invoice, and the
emptied invoice, holding no fee of any service, is hidden from the API (404 on void) once finalized.
"""
from __future__ import annotations

from decimal import Decimal

import pytest

from apps.integrity.invariants import check_all
from apps.invoicing.close import invoice_refresh, invoices_finalize_due, periods_close
from apps.invoicing.models import Fee, Invoice
from apps.usage.services import usage_events_ingest
from apps.usage.validation import EventIn

from .conftest import Billing, at

pytestmark = pytest.mark.django_db


def _two_drafts(billing: Billing, settings) -> tuple[Invoice, Invoice]:
    """March and April of one arrears subscription, both left as drafts by one close on May 2nd."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 2
    metric = billing.metric()
    plan = billing.plan(amount_cents=1000, charges=[(metric, "standard", {"amount": "1"}, {})])
    billing.customer()
    billing.subscribe("s1", plan, when=at(2026, 3, 1, 0, 0))
    for tid, when, gb in (("t1", at(2026, 3, 10), "3"), ("t2", at(2026, 4, 10), "2")):
        usage_events_ingest(
            service=billing.service,
            events=[EventIn(transaction_id=tid, external_subscription_id="s1", code="gb",
                            timestamp=int(when.timestamp()), properties={"gb": gb})],
            now=when,
        )
    periods_close(as_of=at(2026, 5, 2, 1, 0))
    march, april = Invoice.objects.order_by("issuing_date")
    assert (march.status, april.status) == ("draft", "draft")
    assert (march.fees_amount_cents, april.fees_amount_cents) == (1300, 1200)
    return march, april


def test_refreshing_the_earlier_draft_keeps_its_period_and_usage(service_factory, settings):
    billing = Billing(service_factory("nexacloud", "NexaCloud").service)
    march, april = _two_drafts(billing, settings)

    refreshed = invoice_refresh(invoice_id=march.pk, now=at(2026, 5, 3))

    assert refreshed.fees_amount_cents == 1300
    assert sorted(refreshed.fees.values_list("fee_type", "units")) == [
        (Fee.FeeType.CHARGE, Decimal(3)), (Fee.FeeType.SUBSCRIPTION, Decimal(1)),
    ]
    assert check_all() == []  # I2: March's row is on March's charge fee


def test_every_invoice_finalize_due_leaves_can_be_voided_through_the_api(service_factory, api_client_for, settings):
    issued = service_factory("nexacloud", "NexaCloud")
    march, april = _two_drafts(Billing(issued.service), settings)

    assert invoices_finalize_due(now=at(2026, 5, 5)) == 2

    api = api_client_for(issued.raw_key)
    for invoice in (march, april):
        response = api.post(f"/api/v1/invoices/{invoice.lago_id}/void")
        assert response.status_code == 200, response.content
        assert response.json()["invoice"]["status"] == "voided"
    march.refresh_from_db()
    assert march.fees_amount_cents == 1300


def test_a_draft_its_refresh_empties_is_still_the_services_to_read_and_void(service_factory, api_client_for, settings):
    """An in-advance subscription (no charges) upgraded the day it began bills that day on the new plan: the refresh
    drops the old plan's fee, and the invoice, finalized at 0 with no line, holds no fee of any service."""
    settings.INVOICE_GRACE_PERIOD_DAYS = 2
    issued = service_factory("nexacloud", "NexaCloud")
    billing = Billing(issued.service)
    metric = billing.metric()
    basic = billing.plan("basic", amount_cents=1000, pay_in_advance=True)  # a base fee alone
    pro = billing.plan("pro", amount_cents=5000, charges=[(metric, "standard", {"amount": "1"}, {})])
    billing.customer()
    billing.subscribe("s1", basic, when=at(2026, 3, 10, 9))
    periods_close(as_of=at(2026, 3, 10, 9))
    draft = Invoice.objects.get()
    assert draft.status == "draft" and draft.fees_amount_cents > 0
    billing.subscribe("s1", pro, when=at(2026, 3, 10, 11))  # an upgrade: at once
    periods_close(as_of=at(2026, 3, 10, 11))

    invoices_finalize_due(now=at(2026, 3, 13))

    draft.refresh_from_db()
    assert (draft.status, draft.total_amount_cents, draft.fees.count()) == ("finalized", 0, 0)
    api = api_client_for(issued.raw_key)
    assert api.get(f"/api/v1/invoices/{draft.lago_id}").status_code == 200
    response = api.post(f"/api/v1/invoices/{draft.lago_id}/void")
    assert response.status_code == 200, response.content
    assert check_all() == []
